"""The routers (random, rule, minilm-lr, knn, confidence, cascade), by name; save and load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from llmarch_lab import LabError
from llmarch_lab.labs.cost.routing.base import ROUTERS, embed
from llmarch_lab.labs.cost.routing.frames import outcome_arrays, prompt_texts, weak_ok


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
        X = rule_features(prompt_texts(train_df, "RuleRouter.fit"))
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000)).fit(X, y)
        return self

    @property
    def coef_(self) -> dict[str, float]:
        if self.model_ is None:
            return {}
        return dict(zip(_RULE_FEATURES, self.model_[-1].coef_[0].round(3).tolist()))

    def score(self, df) -> np.ndarray:
        X = rule_features(prompt_texts(df, "RuleRouter.score"))
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
        X = embed(prompt_texts(train_df, "EmbeddingLR.fit"))
        if np.bincount(y).min() >= self.cv:
            self.model_ = LogisticRegressionCV(Cs=list(self.Cs), cv=self.cv, scoring="roc_auc", max_iter=2000,
                                               l1_ratios=(0.0,), use_legacy_attributes=False).fit(X, y)
        else:
            self.model_ = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
        return self

    def score(self, df) -> np.ndarray:
        prompts = prompt_texts(df, "EmbeddingLR.score")
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

        strong, weak = outcome_arrays(train_df, "KNNRouter.fit")
        self.y_ = (strong - weak) if self.target == "gap" else 1.0 - weak_ok(train_df)
        X = embed(prompt_texts(train_df, "KNNRouter.fit"))
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine", algorithm="brute").fit(X)
        return self

    def score(self, df) -> np.ndarray:
        if self.nn_ is None:
            raise LabError("KNNRouter.score: the router is not fitted (call fit(train_df) first)")
        _, idx = self.nn_.kneighbors(embed(prompt_texts(df, "KNNRouter.score"), progress=False))
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
