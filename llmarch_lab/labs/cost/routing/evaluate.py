"""RouteLLM's evaluation: quality vs large-model share, PGR, APGR, share at a gap, cost; out-of-fold scores; plots."""

from __future__ import annotations

import copy
from typing import Mapping

import numpy as np
import pandas as pd

from llmarch_lab import LabError
from llmarch_lab.common import stats
from llmarch_lab.labs.cost.routing.base import GAP_FRACS, SMALL_COST_RATIO, embed
from llmarch_lab.labs.cost.routing.frames import need_columns, outcome_arrays, prompt_texts
from llmarch_lab.labs.cost.routing.routers import RandomRouter, Router, RuleRouter, make


# -------------------------------------------------------------------------------------- evaluation
def _thresholds(s: np.ndarray, n: int | None) -> np.ndarray:
    if n is None:  # every distinct score, then +inf (its strict edge gives share 0): the finest curve
        return np.append(np.unique(s), np.inf)
    if n < 1:
        raise LabError(f"curve: n must be >= 1 (RouteLLM uses 10), got {n}")
    # the bin edges of pd.qcut(s, n): linear-interpolated quantiles 0, 1/n, ..., 1
    return np.quantile(s, np.linspace(0.0, 1.0, n + 1))


def _curve_arrays(s, strong, weak, n):
    """(share, quality, threshold) arrays, shares descending as the thresholds rise."""
    N = len(s)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # cum[k] = sum of (strong - weak) over the k highest scores
    gain = np.concatenate([[0.0], np.cumsum((strong - weak)[order][::-1])])
    thr = _thresholds(s, n)
    k = N - np.searchsorted(s_sorted, thr, side="left")  # count of s >= t
    k[-1] = N - np.searchsorted(s_sorted, thr[-1:], side="right")[0]  # the last edge: s > t (share 0)
    quality = weak.mean() + gain[k] / N
    return k / N, quality, thr


def curve(scores, strong, weak, n: int | None = 10) -> pd.DataFrame:
    """RouteLLM's cost-quality curve: for each threshold (the n+1 qcut edges of the scores, n=10 as
    in RouteLLM; n=None for every distinct score) send score >= threshold to the large model (> for
    the top edge), quality = mean of strong where routed else weak. Sorted by large_share, endpoints
    0 and 1 included. Columns large_share, quality, threshold."""
    s = np.asarray(scores, dtype=float)
    strong = np.asarray(strong, dtype=float)
    weak = np.asarray(weak, dtype=float)
    if not (len(s) == len(strong) == len(weak)) or len(s) < 2:
        raise LabError(f"curve: scores, strong and weak need equal lengths >= 2 (got {len(s)}, {len(strong)}, {len(weak)})")
    if np.isnan(s).any():
        raise LabError("curve: the router's scores contain NaN")
    share, quality, thr = _curve_arrays(s, strong, weak, n)
    out = pd.DataFrame({"large_share": share, "quality": quality, "threshold": thr})
    return out.sort_values(["large_share", "threshold"], ascending=[True, False]).reset_index(drop=True)


def pgr(quality, strong_mean: float, weak_mean: float):
    """Performance gap recovered: (quality - weak) / (strong - weak)."""
    gap = strong_mean - weak_mean
    if gap == 0:
        return np.full_like(np.asarray(quality, dtype=float), np.nan)
    return (np.asarray(quality, dtype=float) - weak_mean) / gap


def _apgr_xy(share, quality, strong_mean, weak_mean) -> float:
    from scipy.integrate import trapezoid

    o = np.argsort(share, kind="stable")
    x, q = share[o], quality[o]
    width = x[-1] - x[0]
    gap = strong_mean - weak_mean
    if width <= 0 or gap == 0:
        return float("nan")
    # evaluate.py's apgr_metric: (AUC - weak_auc) / (strong_auc - weak_auc), areas over the share axis
    return float((trapezoid(q, x) - weak_mean * width) / (gap * width))


def apgr(curve_df: pd.DataFrame, strong_mean: float, weak_mean: float) -> float:
    """Average performance gap recovered: the area under the PGR curve over large-model share,
    computed exactly as RouteLLM's evaluate.py (trapezoid over the curve's points; RouteLLM's curve
    has the 11 qcut thresholds of `curve(n=10)`). Random routing gives ~0.5, a perfect router ~1."""
    need_columns(curve_df, ["large_share", "quality"], "apgr")
    return _apgr_xy(curve_df["large_share"].to_numpy(float), curve_df["quality"].to_numpy(float), strong_mean, weak_mean)


def share_for_gap(curve_df: pd.DataFrame, frac: float, strong_mean: float | None = None,
                  weak_mean: float | None = None) -> float:
    """CPT(frac): the smallest large-model share whose quality reaches weak + frac * (strong - weak), on
    the piecewise-linear curve (first crossing, interpolated). strong/weak means default to the curve's
    endpoints (share 1 and share 0). NaN when the curve never reaches it or there is no gap."""
    need_columns(curve_df, ["large_share", "quality"], "share_for_gap")
    c = curve_df.sort_values("large_share", kind="stable")
    x, q = c["large_share"].to_numpy(float), c["quality"].to_numpy(float)
    if strong_mean is None:
        strong_mean = float(q[x == x.max()][-1])
    if weak_mean is None:
        weak_mean = float(q[x == x.min()][0])
    if strong_mean <= weak_mean:
        return float("nan")
    target = weak_mean + frac * (strong_mean - weak_mean)
    hit = np.flatnonzero(q >= target - 1e-12)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - q[i - 1]) / (q[i] - q[i - 1]) * (x[i] - x[i - 1]))


def relative_cost(share, pays_small_always: bool = False, small_cost_ratio: float = SMALL_COST_RATIO):
    """Cost per query relative to always-large: large share + the small calls (all of them for a
    cascade, the non-escalated ones for a router)."""
    share = np.asarray(share, dtype=float)
    small = 1.0 if pays_small_always else 1.0 - share
    return share + small_cost_ratio * small


def _apgr_batch(s, strong, weak, n) -> np.ndarray:
    """APGR per row of (batch, N) arrays (what scipy.stats.bootstrap hands a vectorised statistic)."""
    s, strong, weak = np.atleast_2d(s), np.atleast_2d(strong), np.atleast_2d(weak)
    out = np.empty(s.shape[0])
    for r in range(s.shape[0]):
        share, quality, _ = _curve_arrays(s[r], strong[r], weak[r], n)
        out[r] = _apgr_xy(share, quality, strong[r].mean(), weak[r].mean())
    return out if out.size > 1 else out[0]


def evaluate_scores(scores: Mapping[str, np.ndarray], df, n_boot: int = 1000, seed: int = 0, n: int | None = 10,
                    pays_small_always: Mapping[str, bool] | None = None,
                    small_cost_ratio: float = SMALL_COST_RATIO) -> pd.DataFrame:
    """One row per router from its scores on `df` (the test split, or out-of-fold scores on all rows).

    apgr with a percentile-bootstrap CI over questions (stats.paired_bootstrap: rows resampled, curve
    and APGR recomputed); when a "random" router is present, apgr_vs_random = the paired difference
    with its CI (same resampled rows for both). share_50/80/95 = CPT(50/80/95%);
    cost_saving_x = x / share_x (the paper's Table 6 ratio against random routing);
    cost_95 = relative cost at share_95 (cascades pay every small call)."""
    strong, weak = outcome_arrays(df, "evaluate")
    pays = dict(pays_small_always or {})
    sm, wm = float(strong.mean()), float(weak.mean())
    rows = []
    rand = scores.get("random")
    for name, sc in scores.items():
        sc = np.asarray(sc, dtype=float)
        if len(sc) != len(df):
            raise LabError(f"evaluate: router {name!r} gave {len(sc)} scores for {len(df)} rows")
        c = curve(sc, strong, weak, n)
        row = {"router": name, "n_test": len(df), "strong_mean": sm, "weak_mean": wm, "apgr": apgr(c, sm, wm)}
        if n_boot:
            b = stats.paired_bootstrap(lambda a, st, wk: _apgr_batch(a, st, wk, n), sc, strong, weak,
                                       n_resamples=n_boot, seed=seed)
            row.update(apgr_ci_low=b["ci_low"], apgr_ci_high=b["ci_high"])
            if rand is not None and name != "random":
                d = stats.paired_bootstrap(
                    lambda a, r, st, wk: _apgr_batch(a, st, wk, n) - _apgr_batch(r, st, wk, n),
                    sc, np.asarray(rand, dtype=float), strong, weak, n_resamples=n_boot, seed=seed)
                row.update(apgr_vs_random=d["delta"], apgr_vs_random_ci_low=d["ci_low"],
                           apgr_vs_random_ci_high=d["ci_high"], beats_random=bool(d["clear"] and d["delta"] > 0))
        for f in GAP_FRACS:
            sh = share_for_gap(c, f, sm, wm)
            row[f"share_{round(f * 100)}"] = sh
            row[f"cost_saving_{round(f * 100)}"] = f / sh if sh and sh > 0 else float("nan")
        row["cost_95"] = float(relative_cost(row["share_95"], pays.get(name, False), small_cost_ratio))
        rows.append(row)
    return pd.DataFrame(rows)


def as_routers(routers) -> dict[str, Router]:
    if isinstance(routers, (str, Router)):
        routers = [routers]
    if isinstance(routers, Mapping):
        items = list(routers.items())
    else:
        items = []
        for r in routers:
            r = make(r) if isinstance(r, str) else r
            items.append((r.name, r))
    out = {}
    for name, r in items:
        if not callable(getattr(r, "score", None)) or not callable(getattr(r, "fit", None)):
            raise LabError(f"evaluate: {name!r} is not a router (needs fit and score)")
        out[name] = r
    if not out:
        raise LabError("evaluate: no routers given")
    return out


def prefetch_embeddings(routers: Mapping[str, Router], *frames):
    """Embed every prompt once, with a progress bar, before the text routers ask for them."""
    if any(getattr(r, "needs_text", False) and not isinstance(r, RuleRouter) for r in routers.values()):
        embed([p for f in frames for p in prompt_texts(f, "evaluate")])


def evaluate(routers, train, test, n_boot: int = 1000, seed: int = 0, n: int | None = 10,
             small_cost_ratio: float = SMALL_COST_RATIO, return_curves: bool = False):
    """Fit each router on `train`, score `test`, and report one row per router (see evaluate_scores).
    `routers`: names from ROUTERS, Router objects, or a {name: router} dict. With return_curves, also
    a {name: curve DataFrame} dict for curves_plot."""
    rs = as_routers(routers)
    outcome_arrays(train, "evaluate (train)")
    prefetch_embeddings(rs, train, test)
    scores = {name: np.asarray(r.fit(train).score(test), dtype=float) for name, r in rs.items()}
    table = evaluate_scores(scores, test, n_boot=n_boot, seed=seed, n=n, small_cost_ratio=small_cost_ratio,
                            pays_small_always={k: bool(getattr(r, "pays_small_always", False)) for k, r in rs.items()})
    if return_curves:
        strong, weak = outcome_arrays(test, "evaluate")
        return table, {k: curve(v, strong, weak, n) for k, v in scores.items()}
    return table


def oof_scores(router: Router, df, folds: int = 5, seed: int = 0, stratify_col: str | None = None) -> np.ndarray:
    """Out-of-fold scores: each row scored by a copy of the (unfitted) router fitted on the other folds
    (sklearn KFold / StratifiedKFold), so a 72-question MT-Bench is scored on all 72, never in-sample."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise LabError(f"oof_scores: folds must be >= 2, got {folds}")
    if stratify_col is not None:
        need_columns(df, [stratify_col], "oof_scores")
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(df, df[stratify_col])
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed).split(df)
    out = np.empty(len(df))
    for tr, te in splitter:
        r = copy.deepcopy(router)
        if isinstance(r, RandomRouter):  # a fresh draw per fold, not the same prefix each time
            r.seed = hash((r.seed, int(te[0]))) % (2**32)
        out[te] = r.fit(df.iloc[tr]).score(df.iloc[te])
    return out


def curves_plot(curves: Mapping[str, pd.DataFrame], strong_mean: float, weak_mean: float, title: str = "Routing"):
    """Quality vs large-model share per router, with always-small, always-large and random lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for name, c in curves.items():
        ax.plot(c["large_share"] * 100, c["quality"], marker=".", label=name)
    ax.axhline(strong_mean, color="red", ls="--", lw=1, label="always large")
    ax.axhline(weak_mean, color="grey", ls="--", lw=1, label="always small")
    ax.plot([0, 100], [weak_mean, strong_mean], color="black", ls=":", lw=1, label="random (expected)")
    ax.set_xlabel("large-model calls (%)")
    ax.set_ylabel("quality")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
