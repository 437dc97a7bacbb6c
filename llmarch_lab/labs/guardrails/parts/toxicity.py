"""Part `toxicity`: alt-profanity-check: P / R / F1 / AUC on a labeled file you give
(toxicity_file); without one, its false-positive rate on benign PubMedQA questions and its latency."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from llmarch_lab import paths
from llmarch_lab.assets import datasets
from llmarch_lab.common import stats
from llmarch_lab.labs.guardrails.parts.base import LatencyFields
from llmarch_lab.results import Result


class ToxicityParams(LatencyFields):
    part: Literal["toxicity"] = "toxicity"
    toxicity_file: str = Field("", description="Labeled file (.csv/.tsv/.parquet/.jsonl with text, label) to score; '' = benign FPR only.")
    benign_n: int = Field(200, ge=10, le=1000, description="Benign PubMedQA questions for false-positive rates and stack latency.")


REPORT = ("guardrails toxicity: alt-profanity-check", ["toxicity_file"], {
    "P": "quality.toxicity_precision", "R": "quality.toxicity_recall", "F1": "quality.toxicity_f1",
    "AUC": "quality.toxicity_auc", "FPR": "errors.toxicity_fpr", "benign_FPR": "errors.toxicity_benign_fpr",
    "p50_ms": "latency.toxicity_ms_p50", "p95_ms": "latency.toxicity_ms_p95"})


def _benign_questions(n: int, seed: int) -> list[str]:
    pq = datasets.pubmedqa().sample(frac=1.0, random_state=seed)
    return pq["question"].astype(str).tolist()[:n]


def run(p: ToxicityParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import detectors, plots, toxicity

    det = toxicity.build("profanity-check")
    if p.toxicity_file:
        path = Path(p.toxicity_file)
        path = path if path.is_absolute() else paths.home() / path
        ev = toxicity.evaluate(path, latency_n=p.latency_n)
        m = ev.metrics
        for k in ("precision", "recall", "f1"):
            res.add(f"quality.toxicity_{k}", m[k])
        res.add("quality.toxicity_auc", m["roc_auc"])
        res.add("errors.toxicity_fpr", m["fpr"])
        res.tables["toxicity_predictions"] = ev.predictions
        res.figures["toxicity_pr"] = plots.pr_curve(ev.pr_curve, "profanity-check")
        res.tags["guardrails.toxicity_file"] = str(p.toxicity_file)
    benign = _benign_questions(p.benign_n, p.seed)
    scores = det.score(benign)
    res.add("errors.toxicity_benign_fpr", float((scores >= det.threshold).mean()))
    lat = detectors.measure_latency(det, benign[: max(1, p.latency_n)] if p.latency_n else benign[:50])
    res.metrics.update(stats.percentiles(lat, "latency.toxicity_ms"))
    import pandas as pd

    res.tables["toxicity_benign"] = pd.DataFrame({"text": benign, "score": scores})
