"""Measuring the groundedness check on real PubMedQA pairs: AUC, the accuracy-best threshold,
the pairs, the evaluation table and its metric names."""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules.groundedness import Groundedness
from llmarch_lab.labs.guardrails.rules.text import as_text, split_sentences


def auc(pos, neg) -> float:
    """ROC AUC = P(score_pos > score_neg) + 0.5 P(tie), via the Mann-Whitney U statistic."""
    from scipy.stats import mannwhitneyu

    if not len(pos) or not len(neg):
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))


def best_threshold(pos, neg) -> float:
    """The threshold (midpoint between adjacent scores) with the best accuracy on pos + neg."""
    import numpy as np

    s = np.unique(np.concatenate([pos, neg]))
    cands = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]]) if len(s) else np.array([0.5])
    pos, neg = np.asarray(pos), np.asarray(neg)
    acc = [((pos >= c).sum() + (neg < c).sum()) / (len(pos) + len(neg)) for c in cands]
    return float(cands[int(np.argmax(acc))])


def groundedness_pairs(n_items: int = 200, seed: int = 0, df=None, encode=None):
    """PubMedQA pairs: for each sampled item i, (LONG_ANSWER_i, CONTEXTS_i) is grounded, and
    (LONG_ANSWER_j, CONTEXTS_i) is not, with j a different random item of the sample
    (`other_answer`) and, when `encode` (texts -> unit vectors) is given, also the item whose
    QUESTION is most similar to i's (`near_answer`, a harder negative: same field, often the
    same vocabulary). `half` ("A" / "B") splits the items for threshold choice vs report."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.assets import datasets

    df = datasets.pubmedqa() if df is None else df
    if n_items < 4:
        raise LabError(f"groundedness evaluation needs n_items >= 4, got {n_items}")
    rng = np.random.default_rng(seed)
    pick = df.iloc[rng.permutation(len(df))[: min(n_items, len(df))]].reset_index(drop=True)
    n = len(pick)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never the item itself
    out = pd.DataFrame({"id": pick["id"], "question": pick["question"], "contexts": pick["contexts"],
                        "answer": pick["long_answer"], "other_answer": pick["long_answer"].iloc[other].values,
                        "half": np.where(np.arange(n) < n // 2, "A", "B")})
    if encode is not None:
        q = encode([as_text(x) for x in pick["question"]])
        sim = q @ q.T
        np.fill_diagonal(sim, -np.inf)
        out["near_answer"] = pick["long_answer"].iloc[sim.argmax(axis=1)].values
    return out


def evaluate_groundedness(n_items: int = 200, seed: int = 0, methods=("embedding", "lexical"),
                          negatives=("random", "nearest"), min_fraction: float = 1.0,
                          chunking: str = "sentence", embedder=None, df=None):
    """AUC and accuracy of the check on real pairs (groundedness_pairs). Per method and kind of
    negative, the threshold is the accuracy-best one on half A's items, and accuracy / TPR /
    TNR are reported on half B's (AUC on B and on both halves). One row per (method, negatives)."""
    import numpy as np
    import pandas as pd

    gs = {m: Groundedness(embedder=embedder, method=m, threshold=0.0, min_fraction=min_fraction,
                          chunking=chunking) for m in methods}
    enc = gs["embedding"].encode if "embedding" in gs else None
    pairs = groundedness_pairs(n_items, seed, df, encode=enc if "nearest" in negatives else None)
    if enc is not None:  # one batched encode of every text, then cached look-ups
        answers = pd.concat([pairs[c] for c in ("answer", "other_answer", "near_answer") if c in pairs])
        texts = [s for a in answers for s, _, _ in split_sentences(a)]
        texts += [c for ctx in pairs["contexts"] for c in gs["embedding"].chunks(ctx)]
        enc(list(dict.fromkeys(texts)))
    a, b = (pairs["half"] == "A").values, (pairs["half"] == "B").values
    rows = []
    for method, g in gs.items():
        pos = np.array([g.check(x, c).answer_score for x, c in zip(pairs["answer"], pairs["contexts"])])
        for kind in negatives:
            col = {"random": "other_answer", "nearest": "near_answer"}.get(kind)
            if col is None or col not in pairs:
                raise LabError(f"negatives {kind!r}: use random or nearest (nearest needs the embedding method)")
            neg = np.array([g.check(x, c).answer_score for x, c in zip(pairs[col], pairs["contexts"])])
            t = best_threshold(pos[a], neg[a])
            rows.append({"method": method, "negatives": kind, "chunking": chunking, "min_fraction": min_fraction,
                         "n_pairs_B": int(2 * b.sum()), "threshold_A": round(t, 4),
                         "accuracy_A": float(((pos[a] >= t).sum() + (neg[a] < t).sum()) / (2 * a.sum())),
                         "accuracy_B": float(((pos[b] >= t).sum() + (neg[b] < t).sum()) / (2 * b.sum())),
                         "tpr_B": float((pos[b] >= t).mean()), "tnr_B": float((neg[b] < t).mean()),
                         "auc_B": auc(pos[b], neg[b]), "auc_all": auc(pos, neg),
                         "pos_median": float(np.median(pos)), "neg_median": float(np.median(neg))})
    return pd.DataFrame(rows)


def groundedness_metrics(table) -> dict[str, float]:
    """Suggested metric names for evaluate_groundedness's table: `quality.groundedness_{method}_
    {negatives}_accuracy` fits schema.py's `quality.{w}_accuracy`; `..._auc` needs a spec there."""
    m = {}
    for r in table.to_dict("records"):
        w = f"groundedness_{r['method']}_{r['negatives']}"
        m[f"quality.{w}_auc"] = float(r["auc_B"])
        m[f"quality.{w}_accuracy"] = float(r["accuracy_B"])
    return m
