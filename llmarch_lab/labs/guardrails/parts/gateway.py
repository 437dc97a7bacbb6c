"""Part `gateway`: the guard inside a LiteLLM proxy in front of llama.cpp, attacked by garak; benign
false blocks and the added TTFT."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.guardrails.parts.base import StackFields
from llmarch_lab.results import Result


class GatewayParams(StackFields):
    part: Literal["gateway"] = "gateway"
    garak_cap: int = Field(3, ge=1, le=100, description="Prompts per garak probe (sampled by garak's seed).")
    gateway_benign: int = Field(50, ge=5, le=1000, description="Benign PubMedQA questions through the gateway.")
    gateway_ttft_requests: int = Field(20, ge=5, le=1000, description="Streaming requests timed, bare vs guarded.")


REPORT = ("guardrails gateway: LiteLLM proxy with the guard, attacked by garak", ["stack_detector", "garak_cap"], {
    "ASR_bare": "quality.attack_success_rate_bare", "ASR_guarded": "quality.attack_success_rate_guarded",
    "benign_false_block": "errors.benign_false_block_rate",
    "added_ttft_p50_ms": "latency.gateway_added_ttft_ms_p50",
    "added_ttft_p99_ms": "latency.gateway_added_ttft_ms_p99"})


def run(p: GatewayParams, res: Result) -> None:
    import tempfile

    from llmarch_lab.labs.guardrails import garak_scan, stack

    cfg = stack.default_config(injection_detector=p.stack_detector, pii_config=p.stack_pii_config)
    with tempfile.TemporaryDirectory(prefix="llmarch-garak-") as d:
        out = garak_scan.study(d, cap=p.garak_cap, n_benign=p.gateway_benign, n_ttft=p.gateway_ttft_requests,
                               guard_config=cfg)
        res.add("quality.attack_success_rate_bare", out["asr_bare"])
        res.add("quality.attack_success_rate_guarded", out["asr_guarded"])
        res.add("errors.benign_false_block_rate", out["false_block_rate"])
        guarded = next(k for k in out["ttft"] if k.startswith("guarded_w") and k != "guarded_w0")
        res.add("latency.gateway_added_ttft_ms_p50", out["ttft"][guarded]["added_p50"])
        res.add("latency.gateway_added_ttft_ms_p99", out["ttft"][guarded]["added_p99"])
        res.add("latency.bare_ttft_ms_p50", out["ttft"]["bare"]["p50"])
        res.tables["garak"] = out["garak"]
        import pandas as pd

        res.tables["gateway_ttft"] = pd.DataFrame([{"target": k, **v} for k, v in out["ttft"].items()])
        res.tables["gateway_benign"] = pd.DataFrame(out["benign_rows"])
        res.tags["guardrails.garak_probes"] = ",".join(out["probes"])
