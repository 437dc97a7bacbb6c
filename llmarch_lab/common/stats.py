"""Shared statistics: one percentile set, a paired bootstrap over any metric, a Pareto front.

    from llmarch_lab.common import stats
    stats.percentiles([3.1, 4.0, ...], "latency.query_ms")   # {..._p50, _p90, _p95, _p99, _mean}
    stats.paired_bootstrap(metric, a, b, gold)                # delta + 95% CI of metric(a) - metric(b)
    stats.pareto_front(df, {"perplexity": "lower", "decode_tok_per_s_b1": "higher"})

Percentiles are numpy's linear interpolation (the same as guidellm and vLLM's benchmark script);
every lab reports the same set, PCTS, so a p90 means the same thing in every table.
"""

from __future__ import annotations

from typing import Callable, Mapping

from llmarch_lab import LabError

PCTS = (50, 90, 95, 99)


def percentiles(values, prefix: str, required: bool = True) -> dict[str, float]:
    """{prefix_p50, prefix_p90, prefix_p95, prefix_p99, prefix_mean} of the samples.

    No samples: a LabError naming `prefix` when `required`, else an empty dict (a serving level
    whose every request failed has no latency to report, and that is not an error)."""
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        if required:
            raise LabError(f"{prefix}: no samples")
        return {}
    out = {f"{prefix}_p{q}": float(x) for q, x in zip(PCTS, np.percentile(v, PCTS))}
    out[f"{prefix}_mean"] = float(v.mean())
    return out


def paired_bootstrap(metric: Callable, *columns, n_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, float]:
    """How sure is "system A beats system B"? A percentile bootstrap of a paired difference.

    `columns` are equal-length per-item arrays (e.g. gold labels, A's predictions, B's
    predictions, or A's and B's per-query nDCG); `metric(*resampled_columns)` returns the
    difference of interest for one resample, and must be vectorised over leading axes
    (scipy.stats.bootstrap hands it index arrays of shape (batch, n)). Items are resampled
    with all their columns together (paired). Returns {delta, ci_low, ci_high, clear}, where
    clear = the interval excludes 0 (the data can tell the two apart)."""
    import numpy as np
    from scipy.stats import bootstrap

    cols = [np.asarray(c) for c in columns]
    n = len(cols[0])
    if n < 2 or any(len(c) != n for c in cols):
        raise LabError(f"paired_bootstrap: needs >= 2 items and equal lengths (got {[len(c) for c in cols]})")

    def stat(idx, axis=-1):
        idx = np.asarray(idx, dtype=int)
        return metric(*(c[idx] for c in cols))

    point = float(stat(np.arange(n)))
    res = bootstrap((np.arange(n),), stat, vectorized=True, paired=True, n_resamples=n_resamples,
                    method="percentile", random_state=seed, confidence_level=confidence)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    if (np.isnan(low) or np.isnan(high)) and np.isfinite(dist).mean() >= 0.9:
        # A statistic undefined on a few resamples (APGR when a resample has no quality gap) makes
        # scipy's interval NaN; the percentile interval over the defined resamples is the same
        # method on what is left, as long as nearly all are defined.
        tail = (1.0 - confidence) / 2 * 100
        low, high = (float(x) for x in np.nanpercentile(dist, [tail, 100 - tail]))
    return {"delta": point, "ci_low": low, "ci_high": high, "clear": bool(low > 0 or high < 0)}


def mean_difference(a, b):
    """metric for paired_bootstrap over per-item scores: mean(a) - mean(b) along the last axis."""
    return a.mean(-1) - b.mean(-1)


def pareto_front(df, objectives: Mapping[str, str], tol: float = 0.02) -> list:
    """Index labels of the rows no other row dominates.

    `objectives` maps column -> "higher" or "lower" (is better); columns absent from `df` are
    ignored, rows with a missing objective value are left out. Row b dominates row a when b is
    at least as good on every objective and better on one, where relative differences under
    `tol` count as ties: they are within measurement noise (a 0.1 MB weights difference must
    not keep a slower, worse configuration on the front)."""
    for c, d in objectives.items():
        if d not in ("higher", "lower"):
            raise LabError(f"pareto_front: direction of {c!r} must be 'higher' or 'lower', got {d!r}")
    cols = [c for c in objectives if c in df.columns]
    if not cols:
        return []
    sign = {c: 1.0 if objectives[c] == "higher" else -1.0 for c in cols}
    vals = df[cols].astype(float).dropna()

    def better(b, a, c):  # b beats a on column c by more than the tolerance
        return sign[c] * (b[c] - a[c]) > tol * max(abs(a[c]), abs(b[c]))

    front = []
    for i, a in vals.iterrows():
        dominated = any(j != i and any(better(b, a, c) for c in cols) and not any(better(a, b, c) for c in cols)
                        for j, b in vals.iterrows())
        if not dominated:
            front.append(i)
    return front
