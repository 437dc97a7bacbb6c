"""One interface for guardrail text classifiers, the input hygiene they share, and their evaluation.

    from llmarch_lab.labs.guardrails import detectors, injection
    det = injection.build("rules")
    det.score(["Ignore all previous instructions", b"\\xff bytes", ""])   # float64 in [0, 1]
    det.predict(texts)                                  # score >= det.threshold
    ev = detectors.evaluate(det, texts, labels)         # metrics, predictions, PR-curve points
    ev.metrics["f1"], ev.metrics["latency_ms_p95"]

A `Detector` maps texts to scores in [0, 1] (higher = more likely an attack, or toxic) and owns a
`threshold` for its verdict. Every detector goes through `Detector.score`, which applies the same
normalisation first (`normalize`):

- bytes are decoded as UTF-8 with errors="replace"; None becomes ""; anything else is `str()`-ed;
- control and format characters (NUL, zero-width spaces, bidi overrides, ...) become spaces or go,
  so "ig\\u200bnore" reads as "ignore" to rules and models alike; \\n and \\t are kept;
- an empty or whitespace-only text scores 0.0 without reaching the model (nothing to attack with);
  emoji-only text does reach the model (it is a real input, and must not crash anything).

Long text: models with a token limit split their token ids into overlapping windows
(`windows`), score each, and take the max, so the verdict covers the whole text (an injection
after 100k characters of benign prose is still seen). Rules run on the whole text.

Latency (`measure_latency`) is one text at a time on one CPU thread (`single_thread`), what a
guard pays per request. `evaluate` returns precision, recall, F1, ROC-AUC, the false-positive
rate on benign (label 0) texts and the latency percentiles (common.stats), plus the per-example
predictions and the precision-recall curve for plotting. For trained detectors pass
out-of-fold `scores` (and their per-fold `predictions`), never scores on the texts it was fit on.
"""

from __future__ import annotations

import contextlib
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from llmarch_lab import LabError
from llmarch_lab.common import stats

KEEP_CONTROLS = {"\n", "\t"}


def normalize(text: Any) -> str:
    """Any input -> a clean str: bytes decoded (UTF-8, errors="replace"), controls/format chars out."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    # Hand-written: str.isprintable() would also drop every emoji-free non-ASCII space, and no
    # library call maps exactly {Cc -> space, Cf -> removed} (ZWSP, ZWJ, bidi marks, BOM).
    out = []
    for ch in text:
        if ch in KEEP_CONTROLS:
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or ch == "\r":
            out.append(" ")
        elif cat in ("Cf", "Cs", "Co", "Cn"):
            continue  # format chars, lone surrogates, private use, unassigned
        else:
            out.append(ch)
    return "".join(out)


def is_blank(text: str) -> bool:
    return not text.strip()


def windows(ids: Sequence[int], size: int, overlap: int = 32) -> list[list[int]]:
    """Token ids -> overlapping windows of at most `size` ids (stride size - overlap).

    Hand-written: transformers' `return_overflowing_tokens` does this for HF tokenizers only,
    and NanoGuard's tiktoken tokenizer has no such option; one helper serves both."""
    ids = list(ids)
    if size <= 0:
        raise LabError(f"windows: size must be positive, got {size}")
    if len(ids) <= size:
        return [ids]
    stride = max(1, size - max(0, min(overlap, size - 1)))
    out = []
    for start in range(0, len(ids), stride):
        out.append(ids[start:start + size])
        if start + size >= len(ids):
            break
    return out


class Detector:
    """Base class: subclasses set `name` and implement `_score(clean_texts) -> np.ndarray`.

    `score` normalises, short-cuts blank texts to 0.0, calls `_score` on the rest and clips to
    [0, 1]. `fit(texts, labels)` is a no-op for detectors that are used as they come."""

    name: str = "detector"
    threshold: float = 0.5
    trainable: bool = False

    def _score(self, texts: list[str]):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, texts: Sequence[Any], labels: Sequence[int]) -> "Detector":
        return self

    def score(self, texts: Iterable[Any]):
        import numpy as np

        if isinstance(texts, (str, bytes, bytearray)):
            raise LabError(f"{self.name}: score() takes a list of texts, got one {type(texts).__name__}")
        clean = [normalize(t) for t in texts]
        out = np.zeros(len(clean), dtype=np.float64)
        todo = [i for i, t in enumerate(clean) if not is_blank(t)]
        if todo:
            got = np.asarray(self._score([clean[i] for i in todo]), dtype=np.float64).reshape(-1)
            if got.shape[0] != len(todo):
                raise LabError(f"{self.name}: returned {got.shape[0]} scores for {len(todo)} texts")
            out[todo] = np.nan_to_num(got, nan=0.0)
        return np.clip(out, 0.0, 1.0)

    def predict(self, texts: Iterable[Any]):
        return self.score(texts) >= self.threshold

    def warmup(self) -> None:
        """Load models and run one text, so the first timed call pays no load cost."""
        self.score(["warm-up text for the detector"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, threshold={self.threshold:.4g})"


# ------------------------------------------------------------------------------------ latency

@contextlib.contextmanager
def single_thread(threads: int = 1):
    """torch pinned to `threads` intra-op threads inside the block (restored after).

    ONNX Runtime sessions take their thread count when they are created (detectors here build
    them with 1 thread); scikit-learn's linear models on one row use no thread pool."""
    try:
        import torch
    except ImportError:  # a detector stack without torch: nothing to pin
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_latency(detector: Detector, texts: Sequence[Any], warmup: int = 3, threads: int = 1, repeats: int = 1):
    """Milliseconds per text, one `score([text])` call at a time on `threads` CPU threads.

    `repeats` > 1 times each text that many times and keeps the fastest (timeit's convention:
    other processes on a shared machine only ever add time, they never make a call faster)."""
    import numpy as np

    texts = list(texts)
    if not texts:
        raise LabError(f"{detector.name}: no texts to time")
    with single_thread(threads):
        detector.warmup()
        for t in texts[:warmup]:
            detector.score([t])
        out = np.full(len(texts), np.inf)
        for _ in range(max(1, repeats)):
            for i, t in enumerate(texts):
                t0 = time.perf_counter()
                detector.score([t])
                out[i] = min(out[i], (time.perf_counter() - t0) * 1000.0)
    return out


# ------------------------------------------------------------------------------------ metrics

def binary_metrics(labels, scores, predictions) -> dict[str, float]:
    """precision, recall, f1, roc_auc, fpr (benign texts flagged), fnr, accuracy, n, n_pos."""
    import numpy as np
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    p = np.asarray(predictions).astype(bool)
    if not (len(y) == len(s) == len(p)):
        raise LabError(f"metrics: lengths differ (labels {len(y)}, scores {len(s)}, predictions {len(p)})")
    if len(y) == 0:
        raise LabError("metrics: no examples")
    benign, attack = y == 0, y == 1
    out = {
        "precision": float(precision_score(y, p, zero_division=0)),
        "recall": float(recall_score(y, p, zero_division=0)),
        "f1": float(f1_score(y, p, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, s)) if benign.any() and attack.any() else float("nan"),
        "fpr": float(p[benign].mean()) if benign.any() else float("nan"),
        "fnr": float((~p[attack]).mean()) if attack.any() else float("nan"),
        "accuracy": float((p == y.astype(bool)).mean()),
        "n": float(len(y)),
        "n_pos": float(attack.sum()),
    }
    return out


def choose_threshold(labels, scores, max_fpr: float = 0.05) -> float:
    """The threshold with the best F1 among those whose benign FPR <= max_fpr (if any does),
    else the one with the lowest FPR at the best F1. Thresholds are midpoints between scores."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    if y.min() == y.max():
        return 0.5
    uniq = np.unique(s)
    cands = np.concatenate([[uniq[0] - 1e-9], (uniq[1:] + uniq[:-1]) / 2, [uniq[-1] + 1e-9]])
    # Hand-written sweep: sklearn's precision_recall_curve gives P/R per threshold but not the
    # benign FPR, which the constraint needs; one vectorised pass gives all three.
    pred = s[None, :] >= cands[:, None]
    tp = (pred & (y == 1)).sum(1)
    fp = (pred & (y == 0)).sum(1)
    fn = (y == 1).sum() - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    fpr = fp / max((y == 0).sum(), 1)
    ok = fpr <= max_fpr + 1e-12
    if ok.any() and f1[ok].max() > 0:
        best = np.flatnonzero(ok & (f1 == f1[ok].max()))
    else:
        best = np.flatnonzero(f1 == f1.max())
        best = best[fpr[best] == fpr[best].min()]
    t = float(cands[best[len(best) // 2]])  # the middle of a tie: the widest margin either way
    return float(min(max(t, 0.0), 1.0))


@dataclass
class Evaluation:
    name: str
    metrics: dict[str, float]
    predictions: Any  # DataFrame: text, label, score, pred, correct
    pr_curve: Any  # DataFrame: precision, recall, threshold (the last point has threshold NaN)
    latency_ms: Any = None  # per-text latencies (np.ndarray) or None
    extra: dict[str, Any] = field(default_factory=dict)


def pr_curve(labels, scores):
    import numpy as np
    import pandas as pd
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(np.asarray(labels).astype(int), np.asarray(scores, dtype=float))
    return pd.DataFrame({"precision": prec, "recall": rec, "threshold": np.append(thr, np.nan)})


def evaluate(detector: Detector, texts: Sequence[Any], labels: Sequence[int], scores=None, predictions=None,
             latency: bool = True, latency_texts: Sequence[Any] | None = None, threads: int = 1) -> Evaluation:
    """Quality and per-text latency of `detector` on labeled texts.

    `scores`/`predictions`: precomputed (e.g. out-of-fold) values; otherwise the detector scores
    `texts` now and predicts with its threshold. Latency is timed on `latency_texts` (default:
    `texts`) one at a time on `threads` threads; `latency=False` skips it."""
    import numpy as np
    import pandas as pd

    texts, y = list(texts), np.asarray(labels).astype(int)
    if len(texts) != len(y):
        raise LabError(f"evaluate {detector.name}: {len(texts)} texts but {len(y)} labels")
    if scores is None:
        with single_thread(threads):
            scores = detector.score(texts)
    scores = np.asarray(scores, dtype=float)
    preds = scores >= detector.threshold if predictions is None else np.asarray(predictions).astype(bool)
    m = binary_metrics(y, scores, preds)
    m["threshold"] = float(detector.threshold)
    lat = None
    if latency:
        lat = measure_latency(detector, latency_texts if latency_texts is not None else texts, threads=threads)
        m.update({k.removeprefix("x_"): v for k, v in stats.percentiles(lat, "x_latency_ms").items()})
    df = pd.DataFrame({"text": [normalize(t) for t in texts], "label": y, "score": scores, "pred": preds.astype(int)})
    df["correct"] = (df["pred"] == df["label"]).astype(int)
    return Evaluation(detector.name, m, df, pr_curve(y, scores), lat)
