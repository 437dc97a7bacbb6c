"""Part `gateway`: the chosen router inside a LiteLLM proxy in front of the two llama.cpp engines:
router and proxy overhead on TTFT, measured large share vs the offline one."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.cost.parts.base import OutcomeFields, Served, measured_outcomes, run_dir
from llmarch_lab.results import Result


class GatewayParams(OutcomeFields):
    part: Literal["gateway"] = "gateway"
    gateway_router: Literal["random", "rule", "minilm-lr", "knn"] = Field(
        "minilm-lr", description="The router deployed in the gateway (text-only routers: the gateway routes before any model answers).")
    gateway_requests: int = Field(20, ge=4, le=1000, description="Requests timed per path (direct, proxy, routed).")
    gateway_max_tokens: int = Field(16, ge=1, le=512, description="Output tokens per gateway request.")


REPORT = ("cost gateway: the router in a LiteLLM proxy", ["gateway_router"], {
    "router_overhead_ms": "latency.router_overhead_ms", "proxy_overhead_ms": "latency.proxy_overhead_ms",
    "large_share": "count.gateway_large_share", "share_diff": "errors.large_share_abs_diff"})


def run(p: GatewayParams, res: Result) -> None:
    import numpy as np

    from llmarch_lab.labs.cost import gateway, routing
    from llmarch_lab.llm import engines

    items, pairs, _, _ = measured_outcomes(p)
    router = (routing.make(p.gateway_router, seed=p.seed) if p.gateway_router == "random"
              else routing.make(p.gateway_router)).fit(pairs)
    scores = router.score(pairs)
    threshold = float(np.quantile(scores, 0.5))  # half the traffic large: both engines are exercised
    d = run_dir(f"gateway-{p.seed}")
    path = d / "router.pkl"
    routing.save(router, path)
    prompts = list(dict.fromkeys(str(x) for x in pairs["prompt"].sample(frac=1.0, random_state=p.seed)))
    prompts = prompts[: p.gateway_requests]
    import contextlib

    with contextlib.ExitStack() as stack:
        es = stack.enter_context(engines.launch("llamacpp", model=p.small_model, log_path=d / "small.log", threads=1))
        el = (Served(p.base_url, p.large_model, p.api_key_env) if p.base_url else
              stack.enter_context(engines.launch("llamacpp", model=p.large_model, log_path=d / "large.log", threads=1)))
        gw = stack.enter_context(gateway.launch(es.base_url, es.model_name, el.base_url, el.model_name, path, threshold,
                                                log_path=d / "gateway.log"))
        out = gateway.overhead(gw, es.base_url, prompts, max_tokens=p.gateway_max_tokens)
        res.tables["gateway_decisions"] = gw.decisions()
    res.tables["gateway_requests"] = out.pop("requests")
    for k, v in out.items():
        if k.startswith(("ttft_", "router_score_ms")):
            res.add(f"latency.gateway_{k}", v)
    for k in ("router_overhead_ms", "proxy_overhead_ms", "router_overhead_paired_ms", "proxy_overhead_paired_ms"):
        if k in out:
            res.add(f"latency.{k}", out[k])
    res.add("count.gateway_large_share", out["large_share_measured"])
    res.add("count.offline_large_share", out["large_share_offline"])
    res.add("errors.large_share_abs_diff", abs(out["large_share_measured"] - out["large_share_offline"]))
    res.add("errors.gateway_decision_disagreement", 1.0 - out["decision_agreement"])
    res.add("errors.gateway_error_rate", out["n_errors"] / max(1, len(res.tables["gateway_requests"])))
    res.tags["cost.gateway_threshold"] = (f"{threshold:.4g} (median {p.gateway_router} score: half the traffic "
                                          f"to {p.large_model}); router trained on all measured questions")
