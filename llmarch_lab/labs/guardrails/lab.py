"""Guardrails lab: which guard stack goes in front of and behind the LLM, what it catches, what
it wrongly blocks, and what it costs in latency.

    llmarch-lab run experiments/guardrails.yaml           # every part (resumable)
    llmarch-lab run guardrails --only injection           # one part
    llmarch-lab guard scan --check pii --in F --out O     # any file, one check

One run measures one `part`:
    pii         Presidio span-level P / R / F2 (presidio-evaluator) of one configuration
                (engine no_op | spacy x default | tuned, threshold) on the seeded TEST split;
                settings were chosen on the TRAIN split (pii.py says how)
    injection   one detector (rules, minilm-lr, nanoguard, cascade, ensemble...) on the deepset
                training file: cross-validated (out-of-fold) P / R / F1 / AUC / benign FPR for
                trained detectors, whole-file numbers for the untrained ones; latency per text on
                one CPU thread
    toxicity    alt-profanity-check: P / R / F1 / AUC on a labeled file you give (toxicity_file);
                without one, its false-positive rate on benign PubMedQA questions and its latency
    validation  structured output on llama.cpp + SmolLM2: plain, validate + re-ask, constrained
                decoding (JSON schema); plus the groundedness check of RAG answers
    stack       the whole input + output guard (stack.py) per request on one thread, with the
                hash-chained audit log and the escalation queue as artifacts
    gateway     the guard inside a LiteLLM proxy in front of llama.cpp, attacked by garak; benign
                false blocks and the added TTFT
    outside     one detector on the outside validation set of its check (data/guard_outside: 20+
                sources it was not tuned on, grouped dev / test by source): per-source benign FPR
                and attack recall, threshold chosen on the dev sources, test reported once
    support     the support assistant end to end: a mixed trace (benign support questions,
                attacks, PII, toxic text) through the guarded gateway vs the bare engine: block
                rates per class, false blocks, added latency, answer quality, Prometheus counters
    bias        BBQ / CrowS-Pairs / StereoSet of an LLM by log-likelihood, 95% CIs, and a
                debiasing prefix chosen on half the BBQ items, measured on the other half
    hallucination  groundedness / LLM judge (Qwen 0.5B yes/no log-probs on llama-server) /
                self-consistency on HaluEval + TruthfulQA: dev-threshold accuracy and AUC on test

Each part's params model, report columns and code are in parts/<part>.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.guardrails.parts import (
    bias,
    gateway,
    hallucination,
    injection,
    outside,
    pii,
    stack,
    support,
    toxicity,
    validation,
)
from llmarch_lab.labs.guardrails.parts.base import INJECTION_DETECTORS, PII_CONFIGS
from llmarch_lab.labs.guardrails.parts.bias import BiasParams
from llmarch_lab.labs.guardrails.parts.gateway import GatewayParams
from llmarch_lab.labs.guardrails.parts.hallucination import HallucinationParams
from llmarch_lab.labs.guardrails.parts.injection import InjectionParams
from llmarch_lab.labs.guardrails.parts.outside import OutsideParams
from llmarch_lab.labs.guardrails.parts.pii import PiiParams
from llmarch_lab.labs.guardrails.parts.stack import StackParams
from llmarch_lab.labs.guardrails.parts.support import SupportParams
from llmarch_lab.labs.guardrails.parts.toxicity import ToxicityParams
from llmarch_lab.labs.guardrails.parts.validation import ValidationParams
from llmarch_lab.parts import PartsParams
from llmarch_lab.results import Result

__all__ = ["INJECTION_DETECTORS", "PARTS", "PII_CONFIGS", "GuardrailsParams", "run"]

PARTS = ("pii", "injection", "toxicity", "validation", "stack", "gateway", "outside", "support", "bias",
         "hallucination")
_MODULES = {"pii": pii, "injection": injection, "toxicity": toxicity, "validation": validation,
            "stack": stack, "gateway": gateway, "outside": outside,
            "support": support, "bias": bias, "hallucination": hallucination}


# Every part's fields in one flat model (the notebook's parameters cell, `llmarch-lab list`); a field
# of another part is an error naming the part, and each part's code sees only its own model
# (`part_params()`, parts/<part>.py). The parts are listed last to first: pydantic orders the
# fields from the deepest base up, so they come out in the order of the parts.
class GuardrailsParams(PartsParams, HallucinationParams, BiasParams, SupportParams, OutsideParams, GatewayParams, StackParams, ValidationParams, ToxicityParams, InjectionParams,
                       PiiParams):
    lab = "guardrails"
    key_metrics = ("quality.pii_f2", "quality.injection_f1", "errors.injection_fpr", "latency.guard_ms_p95",
                   "quality.constrained_valid_rate", "quality.attack_success_rate_guarded")
    parts = {"pii": PiiParams, "injection": InjectionParams, "toxicity": ToxicityParams,
             "validation": ValidationParams, "stack": StackParams, "gateway": GatewayParams,
             "outside": OutsideParams, "support": SupportParams, "bias": BiasParams,
             "hallucination": HallucinationParams}

    part: Literal["pii", "injection", "toxicity", "validation", "stack", "gateway", "outside", "support",
                  "bias", "hallucination"] = Field(
        "injection", description="What this run measures (see the module docstring).")


def run(p: GuardrailsParams) -> Result:
    from llmarch_lab.labs.guardrails.detectors import single_thread

    res = Result(tags={"guardrails.part": p.part})
    with single_thread(p.threads):
        _MODULES[p.part].run(p.part_params(), res)
    return res
