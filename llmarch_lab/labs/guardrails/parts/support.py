"""Part `support`: the support assistant end to end (support/): a mixed trace of benign questions,
attacks, PII requests and toxic texts through the guarded LiteLLM gateway in front of llama.cpp,
against the bare engine on the same requests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.guardrails.parts.base import StackFields
from llmarch_lab.results import Result


class SupportParams(StackFields):
    part: Literal["support"] = "support"
    support_requests: int = Field(60, ge=8, le=2000, description="Requests in the support trace (each sent bare and guarded).")
    support_max_tokens: int = Field(48, ge=8, le=512, description="max_tokens of each support request.")


REPORT = ("guardrails support: the support assistant end to end behind the guarded gateway", ["stack_detector", "support_requests"], {
    "attack_stopped": "count.support_attack_flagged_frac", "toxic_stopped": "count.support_toxic_flagged_frac",
    "pii_redacted": "count.support_pii_redacted_frac", "benign_false_block": "errors.benign_false_block_rate",
    "added_p50_ms": "latency.support_added_ms_p50", "added_p99_ms": "latency.support_added_ms_p99",
    "answer_f1": "quality.support_answer_f1", "bare_answer_f1": "quality.support_bare_answer_f1"})


def run(p: SupportParams, res: Result) -> None:
    import tempfile

    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.labs.guardrails import stack, support

    cfg = stack.default_config(injection_detector=p.stack_detector, pii_config=p.stack_pii_config)
    with tempfile.TemporaryDirectory(prefix="llmarch-support-") as d:
        # llama-server: continuous batching, the engine the system bundle deploys (llama-cpp-python's
        # server serialises requests, so bare and guarded latencies would queue behind each other)
        out = support.study(d, n=p.support_requests, seed=p.seed, guard_config=cfg, max_tokens=p.support_max_tokens,
                            engine="llama-server")
    s = out["summary"]
    if s["errors"]:
        raise LabError(f"support trace: {s['errors']} requests failed (HTTP errors); see the support_requests table")
    for row in s["per_class"]:
        res.add(f"count.support_{row['cls']}_flagged_frac", row["stopped_rate"])
        res.add(f"count.support_{row['cls']}_redacted_frac", row["redact_rate"])
    res.add("errors.benign_false_block_rate", s["benign_false_block_rate"])
    for key in ("added_ms", "bare_ms", "guard_ms"):
        res.metrics.update({f"latency.support_{k}": v for k, v in s.get(key, {}).items()})
    if s["n_quality"]:
        res.add("quality.support_answer_f1", s["f1_guarded"])
        res.add("quality.support_bare_answer_f1", s["f1_bare"])
        res.add("quality.support_answer_cosine", s["cosine_guarded"])
        res.add("quality.support_bare_answer_cosine", s["cosine_bare"])
    res.add("count.trace_requests", len(out["rows"]))
    res.tables["support_requests"] = out["rows"]
    res.tables["support_per_class"] = pd.DataFrame(s["per_class"])
    res.tables["guard_prometheus"] = out["prometheus"]
    res.tables["escalations"] = out["escalations"]
    res.texts["guard_config.json"] = cfg.model_dump_json(indent=1)
    res.tags.update({"guardrails.stack_detector": p.stack_detector, "guardrails.support_quality": "token_f1,minilm_cosine"})
