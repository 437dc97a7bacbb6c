"""The chosen router deployed in a real gateway: a LiteLLM proxy in front of a small and a large
engine whose pre-call hook asks the lab's router which one answers.

    with gateway.launch(small.base_url, small.model_name, large.base_url, large.model_name,
                        router_path, threshold, log_path=run_dir / "gateway.log") as gw:
        gw.endpoint()            # model "auto": routed; gw.endpoint("small") / ("large"): direct
        gw.decisions()           # one row per routed request: request_id, score, model, router_ms, ...
        overhead(gw, small.base_url, prompts)   # TTFT engine / proxy / proxy+router, large share

Three processes besides the engines (started by the caller), all on 127.0.0.1, each in its own
process group:

    client -> LiteLLM proxy (.engines/litellm) --"small"--> llama.cpp small
                 |  LabRouter.async_pre_call_hook   \\--"large"--> llama.cpp large
                 |  (model "auto" only: rewrites data["model"] to "small" or "large")
                 v
              router service (the lab's .venv: Starlette + uvicorn): POST /route

The router service loads a fitted router (routing.load: a pickled routing.Router) and answers
{"model": "large"|"small", "score": s, "router_ms": ...}: large when score >= threshold (RouteLLM's
convention, as in routing.curve). It appends every decision to decisions.jsonl (request id =
LiteLLM's call id, score, model, router_ms = the service's scoring time, the scored text's sha256
prefix). Same reasons for a separate process as the guard gateway (guardrails lab): the routers need
the lab's environment (scikit-learn, sentence-transformers), which clashes with litellm[proxy]'s
pins, and scoring is CPU-bound, so it must not run on the proxy's event loop.

The text scored is `prompt_text(messages)`: the last user message (text parts joined), which is
what the offline evaluation scores as df["prompt"] for a one-turn chat.

Routed responses carry headers x-llmarch-route (small|large), x-llmarch-route-score and
x-llmarch-router-ms (the hook's round trip to the service); LiteLLM's own x-litellm-model-api-base
names the engine that answered (the response's `model` field is the name the client asked for,
"auto", by LiteLLM's design). If the router service cannot be reached, the hook fails over to the
large model (quality first) and says so in the proxy's log and in x-llmarch-route-fallback.

Modules: hook.py (the LiteLLM callback and the shared text/decision helpers: standard library only
at the top, loaded by path), service.py (the router service), launch.py (RoutedGateway, launch,
litellm_config), overhead.py (the TTFT overhead benchmark), __main__.py
(`python -m llmarch_lab.labs.cost.gateway serve-router`).
"""

from llmarch_lab.labs.cost.gateway.hook import (
    AUTO,
    ENV_TIMEOUT,
    ENV_URL,
    LARGE,
    SMALL,
    decide,
    prompt_text,
    router_hook,
    router_hook_class,
    text_sha,
)
from llmarch_lab.labs.cost.gateway.launch import RoutedGateway, launch, litellm_config
from llmarch_lab.labs.cost.gateway.overhead import overhead
from llmarch_lab.labs.cost.gateway.service import make_router_app, serve_router

__all__ = ["AUTO", "ENV_TIMEOUT", "ENV_URL", "LARGE", "SMALL", "router_hook", "router_hook_class", "RoutedGateway", "decide", "launch", "litellm_config", "make_router_app",
           "overhead", "prompt_text", "serve_router", "text_sha"]
