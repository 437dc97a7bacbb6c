"""Part `validation`: structured output on llama.cpp + SmolLM2: plain, validate + re-ask,
constrained decoding (JSON schema); plus the groundedness check of RAG answers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from llmarch_lab.labs.guardrails.parts.base import GuardrailsPart
from llmarch_lab.results import Result

STRATEGIES = ("plain", "reask", "constrained")
_COLUMNS = {f"{s}_{k}": m for s in STRATEGIES for k, m in (
    ("valid", f"quality.{s}_valid_rate"), ("acc", f"quality.{s}_field_accuracy"),
    ("p95_ms", f"latency.validation_{s}_ms_p95"))}


class ValidationParams(GuardrailsPart):
    part: Literal["validation"] = "validation"
    validation_items: int = Field(40, ge=3, le=1000, description="PubMedQA items (stratified by decision) per strategy.")
    max_retries: int = Field(2, ge=0, le=10, description="Re-asks at most (validate + re-ask).")
    groundedness_items: int = Field(200, ge=10, le=1000, description="PubMedQA items for the groundedness check (half choose the threshold).")


REPORT = ("guardrails validation: structured output on llama.cpp + SmolLM2, groundedness", [], {
    **_COLUMNS, "grounded_auc": "quality.groundedness_embedding_random_auc",
    "grounded_acc": "quality.groundedness_embedding_random_accuracy"})


def run(p: ValidationParams, res: Result) -> None:
    import tempfile

    from llmarch_lab.assets import models
    from llmarch_lab.labs.guardrails import rules, validation
    from llmarch_lab.llm import engines

    items = validation.sample_items(p.validation_items, seed=p.seed)
    with tempfile.TemporaryDirectory(prefix="llmarch-guard-") as d:
        log = Path(d) / "llamacpp.log"
        try:
            with engines.launch("llamacpp", models.SMOLLM2, log_path=log) as eng:
                summary, per_item = validation.evaluate_strategies(eng.endpoint(), items, max_retries=p.max_retries)
        finally:
            if log.exists():
                res.texts["llamacpp.log"] = log.read_text(errors="replace")[-20000:]
    res.metrics.update(validation.mlflow_metrics(summary))
    res.tables["validation_summary"] = summary
    res.tables["validation_items"] = per_item
    g = rules.evaluate_groundedness(n_items=p.groundedness_items, seed=p.seed)
    res.metrics.update(rules.groundedness_metrics(g))
    res.tables["groundedness"] = g
    res.tags["guardrails.validation_model"] = models.SMOLLM2
