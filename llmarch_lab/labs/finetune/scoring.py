"""Scoring yes/no/maybe by next-token label log-probs, dev-fitted calibration, significance.

    from llmarch_lab.labs.finetune import scoring
    df = scoring.score(model, tok, rows)                 # id, gold, pred, logp_yes/no/maybe
    bias = scoring.fit_bias(dev_df); scoring.apply_bias(test_df, bias)
    scoring.paired_bootstrap(predictions_table)          # tuned - baseline, 95% intervals

The log-probs come from the one LM protocol (llm/lm.py: a local model or a served one); the bootstrap is the
shared one (common.stats.paired_bootstrap).
"""

from __future__ import annotations

from llmarch_lab.common import stats
from llmarch_lab.labs.finetune import data as fd
from llmarch_lab.llm.lm import EndpointLM, LocalLM


def score(model, tok, rows: list[dict], batch_size: int = 8, desc: str = "scoring"):
    """Per-row log-probs of yes/no/maybe as the next token after the prompt, and the argmax."""
    return score_lm(LocalLM(model, tok, batch_size=batch_size), tok, rows, desc)


def score_lm(lm, tok, rows: list[dict], desc: str = "scoring"):
    """`score` through any LM backend (llm/lm.py): id, gold, pred, logp_<label>; plus `bounded`
    (the labels whose value is only an upper bound) when the backend's scores are not exact."""
    import pandas as pd

    lp = lm.label_logprobs([fd.prompt_text(tok, r) for r in rows], fd.LABELS, desc)
    out = []
    for j, (r, v) in enumerate(zip(rows, lp.values)):
        row = {"id": r["id"], "gold": r["decision"], "pred": fd.LABELS[int(v.argmax())],
               **{f"logp_{w}": round(float(x), 4) for w, x in zip(fd.LABELS, v)}}
        if lp.bounded is not None:
            row["bounded"] = ",".join(lp.bounded[j])
        out.append(row)
    return pd.DataFrame(out)


def classification_metrics(gold, pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": accuracy_score(gold, pred),
            "macro_f1": f1_score(gold, pred, labels=list(fd.LABELS), average="macro", zero_division=0)}


def fit_bias(dev, step: float = 0.1, span: float = 8.0) -> tuple[float, float, float]:
    """Per-label log-prob offsets (yes fixed at 0) that maximise macro-F1 on scored rows (ties:
    accuracy, then the smallest offsets). Fitted on dev only; a grid over two numbers, because
    macro-F1 is not differentiable and 161^2 evaluations take well under a second.
    Like contextual calibration (Zhao et al. 2021) it removes a label prior the scoring carries,
    but it is fitted on labelled dev rows instead of a content-free prompt."""
    import numpy as np

    lp = dev[[f"logp_{w}" for w in fd.LABELS]].to_numpy(dtype=float)
    gold = dev.gold.map({w: i for i, w in enumerate(fd.LABELS)}).to_numpy()
    grid = np.round(np.arange(-span, span + step / 2, step), 6)
    best, best_key = (0.0, 0.0, 0.0), None
    for b1 in grid:  # vectorised over the 'maybe' offset
        shifted = lp[None, :, :] + np.stack([np.zeros_like(grid), np.full_like(grid, b1), grid], 1)[:, None, :]
        pred = shifted.argmax(2)  # G x n
        acc, f1 = acc_f1(gold[None, :], pred)
        for k in range(len(grid)):
            key = (round(f1[k], 9), round(acc[k], 9), -(abs(b1) + abs(grid[k])))
            if best_key is None or key > best_key:
                best, best_key = (0.0, float(b1), float(grid[k])), key
    return best


def apply_bias(df, bias):
    """Scored rows with `pred` recomputed from log-probs + bias (raw argmax kept as `raw_pred`)."""
    import numpy as np

    lp = df[[f"logp_{w}" for w in fd.LABELS]].to_numpy(dtype=float) + np.asarray(bias)
    out = df.copy()
    out["raw_pred"] = df["raw_pred"] if "raw_pred" in df else df["pred"]
    out["pred"] = [fd.LABELS[i] for i in lp.argmax(1)]
    return out


def cross_fitted(dev, folds: int = 5, seed: int = 0):
    """Dev predictions where each row's bias was fitted on the other folds (stratified): an honest
    dev estimate of calibrated quality for choosing settings (in-sample would be optimistic)."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    folds = min(folds, int(dev.gold.value_counts().min()))
    if folds < 2:
        return apply_bias(dev, fit_bias(dev))
    parts = []
    for fit_idx, pred_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(dev, dev.gold):
        parts.append(apply_bias(dev.iloc[pred_idx], fit_bias(dev.iloc[fit_idx])))
    return pd.concat(parts).loc[dev.index]


def acc_f1(gold, pred):
    """Accuracy and macro-F1 (zero_division=0, the three labels) of label-index arrays, vectorised
    over leading axes. Hand-written because it runs on thousands of bootstrap resamples at once:
    sklearn's f1_score scores one resample per call (minutes on this CPU for one run's table);
    a test checks it against sklearn."""
    import numpy as np

    f1 = 0.0
    for c in range(len(fd.LABELS)):
        tp = ((pred == c) & (gold == c)).sum(-1)
        denom = (pred == c).sum(-1) + (gold == c).sum(-1)
        f1 = f1 + np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0) / len(fd.LABELS)
    return (gold == pred).mean(-1), f1


def paired_bootstrap(table, comparisons=(("tuned", "majority"), ("tuned", "zero_shot")),
                     n_resamples: int = 2000, seed: int = 0):
    """How sure is "tuned beats the baseline"? 95% percentile-bootstrap intervals of the
    difference in accuracy and macro-F1, resampling questions with their paired predictions
    (common.stats.paired_bootstrap). `table` = the run's `predictions` table (gold,
    <model>_pred, <model>_raw_pred); one row per comparison, kind (headline / raw) and metric.
    An interval that contains 0 means the test set cannot tell the two apart."""
    import pandas as pd

    index = {w: i for i, w in enumerate(fd.LABELS)}
    gold = table.gold.map(index).to_numpy()
    rows = []
    for a, b in comparisons:
        for kind, suffix in (("headline", "pred"), ("raw", "raw_pred")):
            col_a = f"{a}_{suffix}" if f"{a}_{suffix}" in table else f"{a}_pred"
            col_b = f"{b}_{suffix}" if f"{b}_{suffix}" in table else f"{b}_pred"
            if col_a not in table or col_b not in table:
                continue
            pa, pb = table[col_a].map(index).to_numpy(), table[col_b].map(index).to_numpy()
            for m, metric in enumerate(("accuracy", "macro_f1")):
                def delta(g, x, y, m=m):
                    return acc_f1(g, x)[m] - acc_f1(g, y)[m]
                r = stats.paired_bootstrap(delta, gold, pa, pb, n_resamples=n_resamples, seed=seed)
                rows.append({"comparison": f"{a} - {b}", "kind": kind, "metric": metric,
                             "delta": round(r["delta"], 4), "ci95_low": round(r["ci_low"], 4),
                             "ci95_high": round(r["ci_high"], 4), "clear": r["clear"]})
    return pd.DataFrame(rows)


def confusion_plot(preds: dict[str, object]):
    """One confusion matrix per scored model (name -> DataFrame with gold, pred)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axes = plt.subplots(1, len(preds), figsize=(3.6 * len(preds), 3.4), squeeze=False)
    for ax, (name, df) in zip(axes[0], preds.items()):
        ConfusionMatrixDisplay.from_predictions(df.gold, df.pred, labels=list(fd.LABELS), ax=ax,
                                                colorbar=False)
        m = classification_metrics(df.gold, df.pred)
        ax.set_title(f"{name}\nacc {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def score_endpoint(endpoint, tok, rows: list[dict], top_logprobs: int = 20, desc: str = "endpoint scoring"):
    """`score` for a served model: the same prompts (rendered with the model's chat template by
    `tok`), the label log-probs from the server's /completions top-N list (llm.endpoint).

    A label outside the server's top-N gets the N-th log-prob, an upper bound of its own
    (`bounded` names the labels of that row that are such bounds)."""
    return score_lm(EndpointLM(endpoint, tok, top_logprobs), tok, rows, desc)
