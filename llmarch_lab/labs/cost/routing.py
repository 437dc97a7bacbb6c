"""Routing between a small and a large model, scored the way RouteLLM scores it.

    from llmarch_lab.labs.cost import routing
    train, test = routing.split(df, test_fraction=0.5, seed=0)
    table = routing.evaluate(["random", "rule", "minilm-lr", "knn"], train, test)
    table = routing.routellm_replication()          # GSM8K, MMLU, MT-Bench; see PUBLISHED

Outcome frames have one row per question: qid, prompt, strong (large-model quality in [0, 1]), weak
(small-model quality), optionally small_conf (higher = the small model is more confident) and task.
Every router has `name`, `fit(train_df) -> self` and `score(df) -> np.ndarray`, where a HIGHER score
means "send this one to the large model". A fitted router pickles (`save` / `load`); a gateway in
another process calls `router.score(pd.DataFrame({"prompt": [text]}))`.

The evaluation follows RouteLLM's own code (lm-sys/RouteLLM, routellm/evals/benchmarks.py and
evaluate.py), not a re-derivation of the paper's formulas:
- `curve`: the thresholds are the n+1 edges of `pd.qcut(scores, n)` (n=10 there: `--num-results`),
  i.e. the 0, 10%, ..., 100% quantiles of the scores; a question goes to the large model when its
  score >= the threshold (> for the last edge, so the curve ends at share 0). Each threshold gives
  one point (large-model share, mean quality).
- `apgr`: (trapz(quality) - weak area) / (strong area - weak area) over the share axis, exactly
  evaluate.py's apgr_metric; with the curve spanning shares 0..1 this is the area under PGR.
- `share_for_gap` is CPT(x%): the smallest large-model share reaching weak + x * (strong - weak).
  RouteLLM uses np.interp(target, accuracy, share), which assumes a rising curve; we take the
  first crossing of the piecewise-linear curve instead (same on a rising curve, and monotonic in x
  on any curve).
- cost saving (the paper's Table 6): "the inverse of the ratio of GPT-4 calls made by our
  top-performing router relative to the random baseline" at CPT(50%) / CPT(80%), e.g. MT Bench
  3.66x = random 49.03% / matrix factorization 13.40%. We divide by the random router's expected
  share (exactly x: random routing's expected curve is the straight line), not by a noisy draw.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from llmarch_lab import LabError, models, paths
from llmarch_lab.common import stats

ROUTERS = ("random", "rule", "minilm-lr", "knn", "confidence", "cascade")
EMBEDDER = models.MINILM
GAP_FRACS = (0.5, 0.8, 0.95)
# Price of a small-model call relative to a large one. The paper's Appendix D: GPT-4-1106 at
# $24.7 / 1M tokens vs Mixtral-8x7B at $0.24 / 1M tokens (0.24 / 24.7 ~ 0.0097).
SMALL_COST_RATIO = 0.24 / 24.7


# --------------------------------------------------------------------------------------- embeddings
_MODEL = None


def _embedder():
    global _MODEL
    if _MODEL is None:
        _MODEL = models.load_embedder(EMBEDDER, device="cpu")
    return _MODEL


def embed_cache_dir() -> Path:
    return paths.cache_dir() / "embeddings" / EMBEDDER


def embed(texts, batch_size: int = 64, cache: bool = True, progress: bool = True) -> np.ndarray:
    """MiniLM-L6 sentence embeddings, L2-normalised, float32, shape (len(texts), 384).

    Vectors are cached on disk (a diskcache store, safe for several processes, under
    paths.cache_dir()/embeddings/minilm-l6/) keyed by the sha256 of the text, so the 14k MMLU
    prompts are embedded once. Misses are encoded in chunks and stored chunk by chunk."""
    from tqdm.auto import tqdm

    texts = [str(t) for t in texts]
    if not texts:
        raise LabError("embed: the text list is empty")
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    out: list = [None] * len(texts)
    store = None
    if cache:
        from diskcache import Cache

        store = Cache(str(embed_cache_dir()))
        for i, k in enumerate(keys):
            blob = store.get(k)
            if blob is not None:
                out[i] = np.frombuffer(blob, dtype=np.float32)
    todo = [i for i, v in enumerate(out) if v is None]
    # one text may repeat: encode each distinct miss once
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(keys[i], i)
    uniq = list(first.values())
    chunk = 512
    bar = tqdm(total=len(uniq), desc=f"embed {EMBEDDER}", unit="text", disable=not progress or len(uniq) < chunk)
    try:
        for s in range(0, len(uniq), chunk):
            idx = uniq[s:s + chunk]
            vecs = _embedder().encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
            if store is not None:
                with store.transact():
                    for i, v in zip(idx, vecs):
                        store.set(keys[i], v.tobytes())
            for i, v in zip(idx, vecs):
                first[keys[i]] = v  # type: ignore[assignment]
            bar.update(len(idx))
    finally:
        bar.close()
        if store is not None:
            store.close()
    for i in todo:
        out[i] = first[keys[i]]
    return np.stack(out).astype(np.float32, copy=False)


# -------------------------------------------------------------------------------------------- frames
def _need(df, cols, who: str):
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"{who}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LabError(f"{who}: the outcome frame has no column {', '.join(repr(c) for c in missing)} "
                       f"(has {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise LabError(f"{who}: the outcome frame is empty")


def _prompts(df, who: str) -> list[str]:
    _need(df, ["prompt"], who)
    return df["prompt"].astype(str).tolist()


def _outcomes(df, who: str):
    _need(df, ["strong", "weak"], who)
    strong = df["strong"].to_numpy(dtype=float)
    weak = df["weak"].to_numpy(dtype=float)
    for name, v in (("strong", strong), ("weak", weak)):
        if np.isnan(v).any() or (v < 0).any() or (v > 1).any():
            raise LabError(f"{who}: column {name!r} must hold qualities in [0, 1] with no missing values")
    return strong, weak


def weak_ok(df) -> np.ndarray:
    """The label the classifiers learn: the small model's answer is at least as good as the large one's
    (weak >= strong). For correctness outcomes that is "both right, both wrong, or only weak right";
    for graded MT-Bench scores it is "the judge scored weak no lower"."""
    strong, weak = _outcomes(df, "weak_ok")
    return (weak >= strong).astype(int)


def split(df, test_fraction: float = 0.5, seed: int = 0, stratify_col: str | None = None):
    """(train, test), a seeded random split (sklearn's train_test_split), optionally stratified."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise LabError(f"split: test_fraction must be in (0, 1), got {test_fraction}")
    strat = None
    if stratify_col is not None:
        _need(df, [stratify_col], "split")
        strat = df[stratify_col]
    train, test = train_test_split(df, test_size=test_fraction, random_state=seed, stratify=strat)
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- routers
class Router:
    """Base: higher score = send to the large model. `pays_small_always` marks a cascade."""

    name = "router"
    pays_small_always = False
    needs_text = False

    def fit(self, train_df):
        return self

    def score(self, df) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class RandomRouter(Router):
    """The baseline: a uniform random score per question (expected APGR 0.5)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, df) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(df))


# keyword groups for the rule router: hard reasoning, arithmetic, code, open writing, multiple choice
_KEYWORDS = {
    "kw_reason": r"\b(prove|proof|explain why|derive|justify|show that|reason|step by step|why)\b",
    "kw_compute": r"\b(calculate|compute|how many|how much|solve|total|percent|average|sum|probability)\b",
    "kw_code": r"\b(code|function|python|implement|algorithm|program|sql|regex)\b",
    "kw_write": r"\b(write|draft|compose|story|poem|email|essay|describe|imagine)\b",
}
_RULE_FEATURES = ("log_chars", "log_words", "log_digits", "log_numbers", "log_math_ops", "log_lines",
                  "n_questions", "multiple_choice", *_KEYWORDS)


def rule_features(prompts: Sequence[str]) -> pd.DataFrame:
    """Hand features of a prompt: length, digits and numbers, math operators, lines, question marks,
    a multiple-choice flag and keyword-group counts."""
    rows = []
    for p in prompts:
        low = p.lower()
        rows.append({
            "log_chars": np.log1p(len(p)),
            "log_words": np.log1p(len(p.split())),
            "log_digits": np.log1p(sum(c.isdigit() for c in p)),
            "log_numbers": np.log1p(len(re.findall(r"\d+(?:[.,]\d+)?", p))),
            "log_math_ops": np.log1p(len(re.findall(r"[+\-*/=^%$×÷√]", p))),
            "log_lines": np.log1p(p.count("\n")),
            "n_questions": float(p.count("?")),
            "multiple_choice": float(len(re.findall(r"(?m)^[A-D][.)]\s", p)) >= 2),
            **{k: float(len(re.findall(rx, low))) for k, rx in _KEYWORDS.items()},
        })
    return pd.DataFrame(rows, columns=list(_RULE_FEATURES))


class RuleRouter(Router):
    """Length / numbers / keyword complexity. Unfitted, the score is a fixed guess (longer prompts with
    more numbers and reasoning words go large). `fit` replaces the guess with a logistic regression over
    the same 12 hand features, predicting "weak is not good enough": which way a feature points depends
    on the task (long multiple-choice MMLU prompts are not the hard ones), and 12 weights cannot overfit
    a few hundred rows. The learned weights stay readable in `coef_`."""

    name = "rule"
    needs_text = True

    def __init__(self, learn: bool = True, C: float = 1.0):
        self.learn, self.C = learn, C
        self.model_ = None

    def fit(self, train_df):
        if not self.learn:
            return self
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = 1 - weak_ok(train_df)
        if len(np.unique(y)) < 2:
            self.model_ = None  # one class only: nothing to learn, keep the fixed guess
            return self
        X = rule_features(_prompts(train_df, "RuleRouter.fit"))
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000)).fit(X, y)
        return self

    @property
    def coef_(self) -> dict[str, float]:
        if self.model_ is None:
            return {}
        return dict(zip(_RULE_FEATURES, self.model_[-1].coef_[0].round(3).tolist()))

    def score(self, df) -> np.ndarray:
        X = rule_features(_prompts(df, "RuleRouter.score"))
        if self.model_ is None:
            return (X["log_chars"] + X["log_numbers"] + X["log_math_ops"] + X["kw_reason"] + X["kw_compute"]
                    + X["kw_code"]).to_numpy(dtype=float)
        return self.model_.predict_proba(X)[:, 1]


class EmbeddingLR(Router):
    """MiniLM embedding -> logistic regression predicting "weak is good enough" (weak >= strong);
    score = 1 - P(weak ok). C is picked on the training split by LogisticRegressionCV (5-fold ROC AUC)
    when every class has at least 5 rows, else C=1."""

    name = "minilm-lr"
    needs_text = True

    def __init__(self, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), cv: int = 5):
        self.Cs, self.cv = tuple(Cs), cv
        self.model_ = None
        self.prior_ = 0.5

    def fit(self, train_df):
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        y = weak_ok(train_df)
        self.prior_ = float(1 - y.mean())
        if len(np.unique(y)) < 2:
            self.model_ = None  # one class only: every question scores the prior
            return self
        X = embed(_prompts(train_df, "EmbeddingLR.fit"))
        if np.bincount(y).min() >= self.cv:
            self.model_ = LogisticRegressionCV(Cs=list(self.Cs), cv=self.cv, scoring="roc_auc", max_iter=2000,
                                               l1_ratios=(0.0,), use_legacy_attributes=False).fit(X, y)
        else:
            self.model_ = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
        return self

    def score(self, df) -> np.ndarray:
        prompts = _prompts(df, "EmbeddingLR.score")
        if self.model_ is None:
            return np.full(len(prompts), self.prior_)
        proba = self.model_.predict_proba(embed(prompts, progress=False))
        return 1.0 - proba[:, list(self.model_.classes_).index(1)]


class KNNRouter(Router):
    """Mean over the k nearest training prompts (cosine, MiniLM) of strong - weak (target="gap") or of
    1 - weak_ok (target="not_ok"). sklearn NearestNeighbors, brute force: 7k x 384 needs no index."""

    name = "knn"
    needs_text = True

    def __init__(self, k: int = 20, target: str = "gap"):
        if target not in ("gap", "not_ok"):
            raise LabError(f"KNNRouter: target must be 'gap' or 'not_ok', got {target!r}")
        if k < 1:
            raise LabError(f"KNNRouter: k must be >= 1, got {k}")
        self.k, self.target = k, target
        self.nn_ = None
        self.y_ = None

    def fit(self, train_df):
        from sklearn.neighbors import NearestNeighbors

        strong, weak = _outcomes(train_df, "KNNRouter.fit")
        self.y_ = (strong - weak) if self.target == "gap" else 1.0 - weak_ok(train_df)
        X = embed(_prompts(train_df, "KNNRouter.fit"))
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine", algorithm="brute").fit(X)
        return self

    def score(self, df) -> np.ndarray:
        if self.nn_ is None:
            raise LabError("KNNRouter.score: the router is not fitted (call fit(train_df) first)")
        _, idx = self.nn_.kneighbors(embed(_prompts(df, "KNNRouter.score"), progress=False))
        return self.y_[idx].mean(axis=1)


class ConfidenceRouter(Router):
    """The small model's own confidence (label log-prob margin, self-consistency, ...), read from the
    `small_conf` column: score = -small_conf, so the least confident answers go large."""

    name = "confidence"

    def fit(self, train_df):
        self._conf(train_df)
        return self

    def _conf(self, df) -> np.ndarray:
        if not isinstance(df, pd.DataFrame) or "small_conf" not in df.columns:
            raise LabError(f"{self.name}: the outcome frame has no column 'small_conf' (the small model's "
                           "confidence, higher = more sure); add it or use a text router")
        conf = df["small_conf"].to_numpy(dtype=float)
        if np.isnan(conf).any():
            raise LabError(f"{self.name}: column 'small_conf' has missing values")
        return conf

    def score(self, df) -> np.ndarray:
        return -self._conf(df)


class CascadeRouter(ConfidenceRouter):
    """Answer with the small model, escalate when its confidence is low. Same ordering as
    ConfidenceRouter; the difference is the bill: every query pays the small call and escalated
    ones pay the large call too (`pays_small_always`, which `evaluate` prices)."""

    name = "cascade"
    pays_small_always = True


_CLASSES = {"random": RandomRouter, "rule": RuleRouter, "minilm-lr": EmbeddingLR, "knn": KNNRouter,
            "confidence": ConfidenceRouter, "cascade": CascadeRouter}


def make(name: str, **kw) -> Router:
    """A router by name (ROUTERS), keyword arguments passed to its class."""
    if name not in _CLASSES:
        raise LabError(f"router {name!r}: valid are {', '.join(ROUTERS)}")
    try:
        return _CLASSES[name](**kw)
    except TypeError as e:
        raise LabError(f"router {name!r}: {e}") from None


def save(router: Router, path) -> Path:
    """Pickle a (fitted) router with joblib; the MiniLM model is not inside (it loads lazily)."""
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(router, path)
    return path


def load(path) -> Router:
    import joblib

    path = Path(path)
    if not path.is_file():
        raise LabError(f"router file {path}: no such file")
    obj = joblib.load(path)
    if not callable(getattr(obj, "score", None)):
        raise LabError(f"router file {path}: holds a {type(obj).__name__}, not a router")
    return obj


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
    _need(curve_df, ["large_share", "quality"], "apgr")
    return _apgr_xy(curve_df["large_share"].to_numpy(float), curve_df["quality"].to_numpy(float), strong_mean, weak_mean)


def share_for_gap(curve_df: pd.DataFrame, frac: float, strong_mean: float | None = None,
                  weak_mean: float | None = None) -> float:
    """CPT(frac): the smallest large-model share whose quality reaches weak + frac * (strong - weak), on
    the piecewise-linear curve (first crossing, interpolated). strong/weak means default to the curve's
    endpoints (share 1 and share 0). NaN when the curve never reaches it or there is no gap."""
    _need(curve_df, ["large_share", "quality"], "share_for_gap")
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
    strong, weak = _outcomes(df, "evaluate")
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


def _as_routers(routers) -> dict[str, Router]:
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


def _prefetch(routers: Mapping[str, Router], *frames):
    """Embed every prompt once, with a progress bar, before the text routers ask for them."""
    if any(getattr(r, "needs_text", False) and not isinstance(r, RuleRouter) for r in routers.values()):
        embed([p for f in frames for p in _prompts(f, "evaluate")])


def evaluate(routers, train, test, n_boot: int = 1000, seed: int = 0, n: int | None = 10,
             small_cost_ratio: float = SMALL_COST_RATIO, return_curves: bool = False):
    """Fit each router on `train`, score `test`, and report one row per router (see evaluate_scores).
    `routers`: names from ROUTERS, Router objects, or a {name: router} dict. With return_curves, also
    a {name: curve DataFrame} dict for curves_plot."""
    rs = _as_routers(routers)
    _outcomes(train, "evaluate (train)")
    _prefetch(rs, train, test)
    scores = {name: np.asarray(r.fit(train).score(test), dtype=float) for name, r in rs.items()}
    table = evaluate_scores(scores, test, n_boot=n_boot, seed=seed, n=n, small_cost_ratio=small_cost_ratio,
                            pays_small_always={k: bool(getattr(r, "pays_small_always", False)) for k, r in rs.items()})
    if return_curves:
        strong, weak = _outcomes(test, "evaluate")
        return table, {k: curve(v, strong, weak, n) for k, v in scores.items()}
    return table


def oof_scores(router: Router, df, folds: int = 5, seed: int = 0, stratify_col: str | None = None) -> np.ndarray:
    """Out-of-fold scores: each row scored by a copy of the (unfitted) router fitted on the other folds
    (sklearn KFold / StratifiedKFold), so a 72-question MT-Bench is scored on all 72, never in-sample."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise LabError(f"oof_scores: folds must be >= 2, got {folds}")
    if stratify_col is not None:
        _need(df, [stratify_col], "oof_scores")
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


# ----------------------------------------------------------------------------- RouteLLM replication
# Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data", arXiv:2406.18665 (v4, ICLR 2025).
# Strong gpt-4-1106-preview, weak Mixtral-8x7B-Instruct; their routers are trained on Chatbot Arena
# preferences (D_arena), optionally augmented: D_judge = GPT-4-judged Nectar pairs, D_gold = MMLU
# validation golden labels. Ours are trained in-domain (on a split of the same benchmark).
# Provenance: the paper's own PDF/HTML could not be read here (the stored copies give only its
# opening). MT Bench Table 1 is taken in full from a transcription that states it was checked
# against arXiv v4 Tables 1-7 (a "reader's summary of the LMSYS paper", found with the search tool);
# its random CPTs (49.03%, 78.08%) and the MF row (13.40%, 31.31%, 0.802) agree with two other
# independent transcriptions and with Table 6 (49.03 / 13.40 = 3.66x). For MMLU (Table 2) and GSM8K
# (Table 3) only the rows quoted by those transcriptions are recorded; the other rows are left out,
# not guessed (the transcription gives only ranges: MMLU arena-only APGR 0.473-0.524, arena+gold
# 0.572-0.603; GSM8K arena-only 0.438-0.475, arena+judge 0.531-0.622). Shares are fractions.
PUBLISHED = (
    # MT Bench, Table 1
    dict(bench="mt_bench", router="Random (95% CI)", train_data="-", cpt_50=0.4903, cpt_80=0.7808, apgr=0.500, table="Table 1"),
    dict(bench="mt_bench", router="BERT", train_data="arena", cpt_50=0.7809, cpt_80=0.8764, apgr=0.391, table="Table 1"),
    dict(bench="mt_bench", router="Causal LLM", train_data="arena", cpt_50=0.2882, cpt_80=0.7753, apgr=0.573, table="Table 1"),
    dict(bench="mt_bench", router="Matrix Factorization", train_data="arena", cpt_50=0.2532, cpt_80=0.7426, apgr=0.580,
         table="Table 1"),
    dict(bench="mt_bench", router="SW Ranking", train_data="arena", cpt_50=0.3785, cpt_80=0.5899, apgr=0.610, table="Table 1"),
    dict(bench="mt_bench", router="BERT", train_data="arena+judge", cpt_50=0.1958, cpt_80=0.3402, apgr=0.751, table="Table 1"),
    dict(bench="mt_bench", router="Causal LLM", train_data="arena+judge", cpt_50=0.3150, cpt_80=0.4875, apgr=0.679,
         table="Table 1"),
    dict(bench="mt_bench", router="Matrix Factorization", train_data="arena+judge", cpt_50=0.1340, cpt_80=0.3131,
         apgr=0.802, table="Table 1"),
    dict(bench="mt_bench", router="SW Ranking", train_data="arena+judge", cpt_50=0.2321, cpt_80=0.3604, apgr=0.759,
         table="Table 1"),
    # MMLU, Table 2 (best rows only, see above)
    dict(bench="mmlu", router="SW Ranking", train_data="arena+gold", cpt_50=0.354, cpt_80=float("nan"), apgr=0.603,
         table="Table 2"),
    dict(bench="mmlu", router="Causal LLM", train_data="arena+gold", cpt_50=0.355, cpt_80=float("nan"), apgr=0.600,
         table="Table 2"),
    # GSM8K, Table 3 (best row only)
    dict(bench="gsm8k", router="Causal LLM", train_data="arena+judge", cpt_50=0.336, cpt_80=0.633, apgr=0.622,
         table="Table 3"),
)
# Table 6: cost saving ratio of the best router vs random routing at CPT(50%) and CPT(80%).
PUBLISHED_COST_SAVING = {"mt_bench": {"cpt_50": 3.66, "cpt_80": 2.49}, "mmlu": {"cpt_50": 1.41, "cpt_80": 1.14},
                         "gsm8k": {"cpt_50": 1.49, "cpt_80": 1.27}}


def published() -> pd.DataFrame:
    """PUBLISHED as a frame, with source = "RouteLLM paper (<train data>)"."""
    df = pd.DataFrame(list(PUBLISHED))
    df["source"] = "RouteLLM paper (" + df["train_data"] + ")"
    return df


def routellm_replication(benches: Sequence[str] = ("gsm8k", "mmlu", "mt_bench"), test_fraction: float = 0.5,
                         seed: int = 0, routers: Sequence[str] = ("random", "rule", "minilm-lr", "knn"),
                         cv_folds: int | None = None, n_boot: int = 1000, n: int | None = 10,
                         return_curves: bool = False):
    """Our routers on RouteLLM's own precomputed outcomes (GPT-4-1106 vs Mixtral-8x7B).

    Trained in-domain: a seeded half split of each benchmark (stratified by MMLU subject), or, with
    cv_folds, out-of-fold scores on every row. MT-Bench (72 questions) always uses cv_folds (default 5,
    stratified by category) so its test set is not 36 questions. Compare with `published()`, whose
    routers were trained on Chatbot Arena preferences (plus judge / golden-label augmentation)."""
    from llmarch_lab import datasets

    rows, all_curves = [], {}
    for bench in benches:
        df = datasets.routellm_outcomes(bench)
        strat = "subject" if df["subject"].nunique() > 1 else None
        folds = cv_folds or (5 if bench == "mt_bench" else None)
        rs = _as_routers(list(routers))
        if folds:
            _prefetch(rs, df)
            scores = {k: oof_scores(r, df, folds, seed, strat) for k, r in rs.items()}
            test, protocol = df, f"{folds}-fold out-of-fold"
        else:
            train, test = split(df, test_fraction, seed, strat)
            _prefetch(rs, train, test)
            scores = {k: np.asarray(r.fit(train).score(test), dtype=float) for k, r in rs.items()}
            protocol = f"split {1 - test_fraction:.0%}/{test_fraction:.0%}"
        t = evaluate_scores(scores, test, n_boot=n_boot, seed=seed, n=n,
                            pays_small_always={k: r.pays_small_always for k, r in rs.items()})
        t.insert(0, "bench", bench)
        t["protocol"] = protocol
        t["source"] = "ours (in-domain)"
        rows.append(t)
        if return_curves:
            strong, weak = _outcomes(test, bench)
            all_curves[bench] = {k: curve(v, strong, weak, n) for k, v in scores.items()}
    table = pd.concat(rows, ignore_index=True)
    return (table, all_curves) if return_curves else table
