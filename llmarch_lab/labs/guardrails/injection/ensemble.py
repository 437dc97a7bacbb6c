"""The `ensemble` / `ensemble-fast` detectors: logistic stacking of the stages' logits."""

from __future__ import annotations

from typing import Sequence

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.detectors import Detector, choose_threshold, normalize
from llmarch_lab.labs.guardrails.injection.base import MAX_FPR
from llmarch_lab.labs.guardrails.injection.minilm_lr import MiniLMLRDetector
from llmarch_lab.labs.guardrails.injection.nanoguard import NanoGuardDetector
from llmarch_lab.labs.guardrails.injection.patterns import RulesDetector

# ============================================================================== ensemble

def _logit(p):
    import numpy as np

    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class EnsembleDetector(Detector):
    """Logistic stacking of member scores (logits); minilm-lr enters with out-of-fold training scores."""

    trainable = True

    def __init__(self, members: Sequence[str] = ("rules", "minilm-lr", "nanoguard"), mid: MiniLMLRDetector | None = None,
                 max_fpr: float = MAX_FPR, folds: int = 5, seed: int = 0, nanoguard_cache: bool = False):
        self.members = tuple(members)
        self.name = "ensemble" if "nanoguard" in self.members else "ensemble-fast"
        self.rules = RulesDetector()
        self.mid = mid or MiniLMLRDetector()
        self.nano = NanoGuardDetector(cache=nanoguard_cache) if "nanoguard" in self.members else None
        self.max_fpr, self.folds, self.seed = max_fpr, folds, seed
        self.stack = None
        self.threshold = 0.5

    def _features(self, texts, mid_scores=None, nano_scores=None):
        import numpy as np

        cols = []
        for m in self.members:
            if m == "rules":
                cols.append(self.rules.score(texts))
            elif m == "minilm-lr":
                cols.append(self.mid.score(texts) if mid_scores is None else mid_scores)
            elif m == "nanoguard":
                cols.append(self.nano.score(texts) if nano_scores is None else nano_scores)
        return _logit(np.column_stack(cols))

    def fit(self, texts, labels, nano_scores=None) -> "EnsembleDetector":
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        texts = [normalize(t) for t in texts]
        y = np.asarray(labels).astype(int)
        if self.mid.lr is None or self.mid.train_oof is None or len(self.mid.train_oof) != len(texts):
            self.mid.fit(texts, y)
        F = self._features(texts, mid_scores=self.mid.train_oof, nano_scores=nano_scores)
        stack = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced")
        cv = StratifiedKFold(max(2, min(self.folds, int(np.bincount(y).min()))), shuffle=True, random_state=self.seed)
        oof = cross_val_predict(stack, F, y, cv=cv, method="predict_proba")[:, 1]
        self.threshold = choose_threshold(y, oof, self.max_fpr)
        self.stack = stack.fit(F, y)
        return self

    def _score(self, texts: list[str]):
        if self.stack is None:
            raise LabError(f"{self.name}: not fitted")
        return self.stack.predict_proba(self._features(texts))[:, 1]
