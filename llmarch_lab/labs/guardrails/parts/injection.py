"""Part `injection`: one detector (rules, minilm-lr, nanoguard, cascade, ensemble...) on the deepset
training file: cross-validated (out-of-fold) P / R / F1 / AUC / benign FPR for trained detectors,
whole-file numbers for the untrained ones; latency per text on one CPU thread."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.common import stats
from llmarch_lab.labs.guardrails.parts.base import DetectorName, LatencyFields
from llmarch_lab.results import Result


class InjectionParams(LatencyFields):
    part: Literal["injection"] = "injection"
    detector: DetectorName = Field(
        "minilm-lr", description="Injection detector (injection.DETECTORS).")
    cv_folds: int = Field(5, ge=2, le=20, description="Stratified folds for trained detectors (out-of-fold numbers).")


REPORT = ("guardrails injection: deepset train, out-of-fold for trained detectors", ["detector"], {
    "P": "quality.injection_precision", "R": "quality.injection_recall", "F1": "quality.injection_f1",
    "AUC": "quality.injection_auc", "benign_FPR": "errors.injection_fpr",
    "p50_ms": "latency.injection_ms_p50", "p95_ms": "latency.injection_ms_p95",
    "escalated": "count.injection_escalated_frac"})


def run(p: InjectionParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import injection, plots

    df, sha = injection.training_file()
    out = injection.cross_validate(p.detector, df, folds=p.cv_folds, seed=p.seed, latency_n=p.latency_n)
    m = out["metrics"]
    for k in ("precision", "recall", "f1"):
        res.add(f"quality.injection_{k}", m[k])
    res.add("quality.injection_auc", m["roc_auc"])
    res.add("errors.injection_fpr", m["fpr"])
    if "latency_ms" in out:
        res.metrics.update(stats.percentiles(out["latency_ms"], "latency.injection_ms"))
    if "frac_nanoguard" in m:
        res.add("count.injection_escalated_frac", m["frac_nanoguard"])
    res.tags.update({"guardrails.detector": p.detector, "guardrails.numbers":
                     f"{p.cv_folds}-fold out-of-fold" if out["cross_validated"] else "whole file (untrained detector)",
                     "guardrails.training_sha256": sha, "guardrails.threshold": f"{m['threshold_mean']:.4g}"})
    res.tables["injection_oof"] = out["oof"]
    if out["folds"]:
        import pandas as pd

        res.tables["injection_folds"] = pd.DataFrame(out["folds"])
    res.figures["injection_pr"] = plots.pr_curve(out["pr_curve"], p.detector)
    res.figures["injection_confusion"] = plots.confusion(out["oof"]["label"], out["oof"]["pred"], p.detector)
