"""The `minilm-lr` detector: MiniLM embeddings + logistic regression, fitted once on the training file and cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from llmarch_lab import LabError, paths
from llmarch_lab.labs.guardrails.detectors import Detector, choose_threshold, normalize
from llmarch_lab.labs.guardrails.injection.base import CACHE, MAX_FPR, MODEL_VERSION
from llmarch_lab.labs.guardrails.injection.encoder import MiniLMEncoder

# ============================================================================== minilm-lr

C_GRID = (1.0, 4.0, 16.0)


def _oof_lr(X, y, C: float, folds: int, seed: int):
    """Out-of-fold P(injection) of a LogisticRegression(C) over stratified folds."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        lr = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(X[tr], y[tr])
        oof[te] = lr.predict_proba(X[te])[:, 1]
    return oof


class MiniLMLRDetector(Detector):
    """MiniLM embeddings + logistic regression; C and threshold by inner CV (see module docstring)."""

    name = "minilm-lr"
    trainable = True

    def __init__(self, encoder: MiniLMEncoder | None = None, C: float | None = None, max_fpr: float = MAX_FPR,
                 inner_folds: int = 5, seed: int = 0):
        self.encoder = encoder or MiniLMEncoder()
        self.C, self.max_fpr, self.inner_folds, self.seed = C, max_fpr, inner_folds, seed
        self.lr = None
        self.threshold = 0.5
        self.train_oof = None  # inner out-of-fold scores of the training texts (cascade/ensemble use them)
        self.meta: dict[str, Any] = {}

    def features(self, texts: Sequence[str], memo: bool = True):
        """(n, dim): each text's first window (what plain truncation would see), for training."""
        import numpy as np

        return np.stack([w[0] for w in self.encoder.embed_windows([normalize(t) for t in texts], memo=memo)])

    def fit(self, texts, labels) -> "MiniLMLRDetector":
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        y = np.asarray(labels).astype(int)
        X = self.features(texts)
        folds = max(2, min(self.inner_folds, int(np.bincount(y, minlength=2).min())))
        if self.C is None:
            aucs = {C: roc_auc_score(y, _oof_lr(X, y, C, folds, self.seed)) for C in C_GRID}
            C = max(aucs, key=lambda c: (round(aucs[c], 4), -c))
        else:
            C, aucs = self.C, {}
        oof = _oof_lr(X, y, C, folds, self.seed)
        self.threshold = choose_threshold(y, oof, self.max_fpr)
        self.lr = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(X, y)
        self.train_oof = oof
        self.meta = {"C": C, "inner_auc": aucs, "n_train": int(len(y)), "threshold": self.threshold}
        return self

    def _score(self, texts: list[str]):
        import numpy as np

        if self.lr is None:
            raise LabError("minilm-lr: not fitted (call fit, or injection.build('minilm-lr'))")
        return np.array([float(self.lr.predict_proba(w)[:, 1].max()) for w in self.encoder.embed_windows(texts)])

    def save(self, path: Path) -> Path:
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump({"version": MODEL_VERSION, "lr": self.lr, "threshold": self.threshold, "meta": self.meta,
                     "train_oof": self.train_oof, "max_fpr": self.max_fpr}, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path, encoder: MiniLMEncoder | None = None) -> "MiniLMLRDetector":
        import joblib

        blob = joblib.load(path)
        if blob.get("version") != MODEL_VERSION:
            raise LabError(f"{path}: fitted with format {blob.get('version')}, expected {MODEL_VERSION}; delete it to refit")
        det = cls(encoder=encoder, C=blob["meta"].get("C"), max_fpr=blob["max_fpr"])
        det.lr, det.threshold, det.meta, det.train_oof = blob["lr"], blob["threshold"], blob["meta"], blob["train_oof"]
        return det


def training_file() -> tuple[Any, str]:
    """(DataFrame text/label, sha256) of data/prompt_injections/train.parquet, verified."""
    from llmarch_lab.assets import datasets

    df = datasets.prompt_injections()
    return df, datasets.verified_files()["prompt_injections/train.parquet"]


def model_path(sha: str) -> Path:
    import sklearn

    return paths.cache_dir() / CACHE / f"minilm-lr-v{MODEL_VERSION}-{sha[:16]}-sk{sklearn.__version__}.joblib"


def load_or_train_minilm(encoder: MiniLMEncoder | None = None, refit: bool = False) -> MiniLMLRDetector:
    """minilm-lr fitted on the whole training file: loaded from the cache, or trained and saved."""
    df, sha = training_file()
    path = model_path(sha)
    if path.exists() and not refit:
        try:
            return MiniLMLRDetector.load(path, encoder)
        except Exception:  # noqa: BLE001 - an unreadable/old cache entry is refitted, not fatal
            pass
    det = MiniLMLRDetector(encoder=encoder).fit(df.text.tolist(), df.label.values)
    det.meta["train_sha256"] = sha
    det.save(path)
    return det
