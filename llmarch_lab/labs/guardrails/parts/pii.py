"""Part `pii`: Presidio span-level P / R / F2 (presidio-evaluator) of one configuration (engine
no_op | spacy x default | tuned, threshold) on the seeded TEST split, and the share of gold PII
values still found verbatim in the redacted text (pii/leak.py); settings were chosen on the TRAIN
split (pii/evaluate.py says how)."""

from __future__ import annotations

import json
from typing import Literal, Optional

from pydantic import Field

from llmarch_lab.assets import datasets
from llmarch_lab.labs.guardrails.parts.base import GuardrailsPart, PiiConfigName
from llmarch_lab.results import Result


class PiiParams(GuardrailsPart):
    part: Literal["pii"] = "pii"
    pii_config: PiiConfigName = Field(
        "spacy/tuned", description="Presidio engine/configuration (pii.configs()).")
    pii_threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="Score threshold; None = the configuration's own (chosen on train).")
    pii_test_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Share of synth_dataset_v2 held out as the test split (seeded).")
    pii_limit: int = Field(0, ge=0, description="Score at most this many test records (0 = all).")


REPORT = ("guardrails pii: Presidio span-level, test split", ["pii_config", "pii_threshold"], {
    "P": "quality.pii_precision", "R": "quality.pii_recall", "F2": "quality.pii_f2",
    "leak": "errors.pii_gold_leak_rate", "leaks": "errors.pii_gold_leaks", "det_leaks": "errors.pii_detected_leaks",
    "p50_ms": "latency.pii_ms_p50", "p95_ms": "latency.pii_ms_p95"})


def run(p: PiiParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import pii, plots

    cfg = pii.configs()[p.pii_config]
    if p.pii_threshold is not None:
        cfg = cfg.with_threshold(p.pii_threshold)
    _, test = pii.split(datasets.pii_synth(), seed=p.seed, test_fraction=p.pii_test_fraction)
    if p.pii_limit:
        test = test[: p.pii_limit]
    ev = pii.evaluate(test, cfg)
    res.metrics.update(ev.metrics())
    res.tags.update({"guardrails.pii_config": p.pii_config, "guardrails.pii_threshold": f"{cfg.threshold:g}",
                     "guardrails.pii_test_records": str(len(test))})
    res.tables["pii_per_entity"] = ev.per_entity
    res.tables["pii_predictions"] = ev.predictions
    res.texts["pii_config.json"] = json.dumps(cfg.describe(), indent=1)
    res.figures["pii_per_entity"] = plots.per_entity_bars(ev.per_entity, f"PII {p.pii_config} @ {cfg.threshold:g}")
