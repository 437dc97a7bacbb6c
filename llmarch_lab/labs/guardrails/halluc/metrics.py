"""Metrics of a hallucination score (higher = more likely hallucinated) on the candidate frame:
the accuracy-best threshold on the dev half, accuracy and ROC-AUC on the test half, and 95%
percentile-bootstrap intervals that resample test ITEMS (an item's right and hallucinated
answers stay together: they share a context, so they are not independent).

    m = metrics.summarize(cands, scores)     # {"threshold", "acc", "auc", "acc_ci95_low", ...}
"""

from __future__ import annotations

from llmarch_lab import LabError


def auc(scores, labels) -> float:
    """ROC-AUC = P(score of a positive > score of a negative) + 0.5 P(tie) (Mann-Whitney U);
    NaN when a class is absent."""
    import numpy as np
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(scores, labels) -> float:
    """The cut (a midpoint between adjacent distinct scores, or just outside them) with the best
    accuracy of `score >= cut -> hallucinated`; ties go to the lowest such cut."""
    import numpy as np

    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    if s.size == 0:
        raise LabError("best_threshold: no scores")
    u = np.unique(s)
    cuts = np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-9]])
    acc = [float(((s >= c) == (y == 1)).mean()) for c in cuts]
    return float(cuts[int(np.argmax(acc))])


def accuracy(scores, labels, threshold: float) -> float:
    import numpy as np

    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    return float(((s >= threshold) == (y == 1)).mean()) if s.size else float("nan")


def bootstrap_ci(scores, labels, groups, threshold: float, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, float]:
    """Percentile intervals of accuracy (at the fixed dev threshold) and AUC over resamples of
    the groups (items) with replacement."""
    import numpy as np

    s, y, g = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int), np.asarray(groups)
    ids, inv = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    accs, aucs = [], []
    for _ in range(n_resamples):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        accs.append(accuracy(s[idx], y[idx], threshold))
        aucs.append(auc(s[idx], y[idx]))
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name, vals in (("acc", accs), ("auc", aucs)):
        lo, hi = np.nanpercentile(np.asarray(vals, dtype=float), [tail, 100 - tail])
        out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = float(lo), float(hi)
    return out


def summarize(cands, scores, n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Threshold on the dev half, accuracy / AUC (+ bootstrap intervals) on the test half.
    `cands` needs columns half, label, item; `scores` one float per row (NaN rows are an error)."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    if len(s) != len(cands):
        raise LabError(f"summarize: {len(s)} scores for {len(cands)} candidates")
    if np.isnan(s).any():
        raise LabError(f"summarize: {int(np.isnan(s).sum())} candidates have no score")
    dev = (cands["half"] == "dev").to_numpy()
    test = (cands["half"] == "test").to_numpy()
    y = cands["label"].to_numpy(dtype=int)
    if not dev.any() or not test.any():
        raise LabError("summarize: needs candidates in both halves (dev and test)")
    t = best_threshold(s[dev], y[dev])
    out = {"threshold": t, "dev_acc": accuracy(s[dev], y[dev], t), "acc": accuracy(s[test], y[test], t),
           "auc": auc(s[test], y[test]), "n_test": int(test.sum()), "n_dev": int(dev.sum())}
    out.update(bootstrap_ci(s[test], y[test], cands["item"].to_numpy()[test], t, n_resamples, seed))
    return out
