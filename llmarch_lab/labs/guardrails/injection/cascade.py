"""The `cascade` detector: rules -> minilm-lr -> nanoguard, with the unsure band chosen on out-of-fold scores."""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.detectors import Detector, normalize
from llmarch_lab.labs.guardrails.injection.base import MAX_FPR
from llmarch_lab.labs.guardrails.injection.minilm_lr import MiniLMLRDetector
from llmarch_lab.labs.guardrails.injection.nanoguard import NanoGuardDetector
from llmarch_lab.labs.guardrails.injection.patterns import RulesDetector

# ============================================================================== cascade

def _remap(s, t: float):
    """Piecewise-linear map of [0, 1] with t -> 0.5, so every stage's verdict is score >= 0.5."""
    import numpy as np

    s = np.asarray(s, dtype=float)
    t = min(max(t, 1e-6), 1 - 1e-6)
    return np.where(s < t, 0.5 * s / t, 0.5 + 0.5 * (s - t) / (1 - t))


def choose_band(labels, rule_scores, mid_scores, hi_scores, mid_threshold: float, hi_threshold: float = 0.5,
                max_escalate: float = 0.05, max_fpr: float = MAX_FPR, rule_threshold: float = 0.5):
    """(lo, hi) for the cascade on out-of-fold scores: best F1 with benign FPR <= max_fpr and at most
    `max_escalate` of texts (those rules leave undecided with lo <= mid < hi) reaching the last stage."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    r, m, h = (np.asarray(a, dtype=float) for a in (rule_scores, mid_scores, hi_scores))
    ruled = r >= rule_threshold
    q = np.unique(np.quantile(m, np.linspace(0, 1, 81)))
    cands = sorted({float(mid_threshold), *q.tolist()})
    best, best_key = (mid_threshold, mid_threshold), None
    for lo in cands:
        for hi in cands:
            if hi < lo:
                continue
            esc = ~ruled & (m >= lo) & (m < hi)
            if esc.mean() > max_escalate + 1e-12:
                continue
            pred = ruled | (~esc & (m >= hi)) | (esc & (h >= hi_threshold))
            tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
            fn = int((y == 1).sum()) - tp
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            fpr = fp / max(int((y == 0).sum()), 1)
            key = (fpr <= max_fpr + 1e-12, round(f1, 6), -esc.mean())
            if best_key is None or key > best_key:
                best, best_key = (lo, hi), key
    return best


class CascadeDetector(Detector):
    """rules -> minilm-lr -> nanoguard; only minilm-lr's unsure band [lo, hi) reaches nanoguard."""

    name = "cascade"
    trainable = True

    def __init__(self, rules: RulesDetector | None = None, mid: MiniLMLRDetector | None = None,
                 last: Detector | None = None, band: tuple[float, float] | None = None, max_escalate: float = 0.05,
                 max_fpr: float = MAX_FPR):
        self.rules = rules or RulesDetector()
        self.mid = mid or MiniLMLRDetector()
        self.last = last or NanoGuardDetector()
        self.band = band
        self.max_escalate, self.max_fpr = max_escalate, max_fpr
        self.threshold = 0.5
        self.last_stages: list[str] = []  # which stage decided each text of the last score() call

    def fit(self, texts, labels, last_scores=None) -> "CascadeDetector":
        """Fit minilm-lr (if it is not fitted) and choose the band on its inner out-of-fold scores.
        `last_scores`: the last stage's scores of `texts`, if already known."""
        texts = [normalize(t) for t in texts]
        if self.mid.lr is None or self.mid.train_oof is None or len(self.mid.train_oof) != len(texts):
            self.mid.fit(texts, labels)
        r = self.rules.score(texts)
        h = self.last.score(texts) if last_scores is None else last_scores
        self.band = choose_band(labels, r, self.mid.train_oof, h, self.mid.threshold, self.last.threshold,
                                self.max_escalate, self.max_fpr, self.rules.threshold)
        return self

    def decide(self, texts: list[str]):
        """(scores in [0,1] with verdict = score >= 0.5, stage names)."""
        import numpy as np

        if self.band is None:
            raise LabError("cascade: no band (call fit, or injection.build('cascade'))")
        lo, hi = self.band
        n = len(texts)
        out = np.zeros(n)
        stage = ["rules"] * n
        r = self.rules.score(texts)
        ruled = r >= self.rules.threshold
        out[ruled] = _remap(r[ruled], self.rules.threshold)
        rest = np.flatnonzero(~ruled)
        if rest.size:
            m = self.mid.score([texts[i] for i in rest])
            esc = (m >= lo) & (m < hi)
            # outside the band minilm-lr decides: below lo is benign, at/above hi an attack
            out[rest[~esc]] = np.where(m[~esc] >= hi, _remap(m[~esc], hi), _remap(m[~esc], lo))
            for i in rest[~esc]:
                stage[i] = "minilm-lr"
            if esc.any():
                idx = rest[esc]
                out[idx] = _remap(self.last.score([texts[i] for i in idx]), self.last.threshold)
                for i in idx:
                    stage[i] = self.last.name
        return np.clip(out, 0, 1), stage

    def _score(self, texts: list[str]):
        s, self.last_stages = self.decide(texts)
        return s

    def score(self, texts):
        if isinstance(texts, (str, bytes, bytearray)):
            raise LabError(f"{self.name}: score() takes a list of texts, got one {type(texts).__name__}")
        clean = [normalize(t) for t in texts]
        self.last_stages = []
        out = super().score(clean)
        # blanks never reach _score: record them as decided by the input check
        stages = iter(self.last_stages)
        self.last_stages = [next(stages) if t.strip() else "blank" for t in clean]
        return out
