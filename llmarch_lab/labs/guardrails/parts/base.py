"""What the guardrails lab's parts share: `GuardrailsPart` (the fields every part has), the field
mixins two parts read, and the names of the PII configurations and injection detectors.

    class ToxicityParams(LatencyFields):
        part: Literal["toxicity"] = "toxicity"
        ...
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.config import LabParams

PII_CONFIGS = ("no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned")
INJECTION_DETECTORS = ("rules", "minilm-lr", "nanoguard", "cascade", "ensemble-fast", "ensemble", "union-lr")
PiiConfigName = Literal["no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned"]
DetectorName = Literal["rules", "minilm-lr", "nanoguard", "cascade", "ensemble-fast", "ensemble", "union-lr"]
TOXICITY_DETECTORS = ("profanity-check", "hatesonar", "minilm-tox", "tox-ensemble")


class GuardrailsPart(LabParams):
    """Every part: the part's name and the CPU threads its models use."""

    part: str = Field(description="What this run measures (see the module docstring).")
    threads: int = Field(1, ge=1, le=64, description="CPU threads for models (the latency goal is per request on one thread).")


class LatencyFields(GuardrailsPart):
    """Mixin (injection, toxicity): how many texts are timed one at a time."""

    latency_n: int = Field(150, ge=0, le=5000, description="Texts timed one at a time (0 = no latency).")


class StackFields(GuardrailsPart):
    """Mixin (stack, gateway): the guard stack's injection and PII checks."""

    stack_detector: DetectorName = Field(
        "union-lr", description="The stack's injection check (stack / gateway / support parts; union-lr is validated on outside sources).")
    stack_pii_config: PiiConfigName = Field(
        "spacy/tuned", description="The stack's PII checks (input, output) and the audit log's redaction.")
