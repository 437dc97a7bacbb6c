"""Starting the routed gateway (lab venv): the router service and the LiteLLM proxy in front of a
small and a large engine, as a RoutedGateway (a context manager that stops both)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab.labs.cost.gateway import hook
from llmarch_lab.labs.cost.gateway.hook import AUTO, ENV_TIMEOUT, ENV_URL, LARGE, SMALL
from llmarch_lab.llm import litellm_proxy as lp

DECISION_COLUMNS = ("ts", "request_id", "score", "model", "router_ms", "chars", "text_sha")


@dataclass
class RoutedGateway(lp.ProxyGateway):
    base_url: str  # the proxy's OpenAI base URL (ends in /v1)
    router_url: str
    small_base_url: str
    small_name: str
    large_base_url: str
    large_name: str
    router_path: Path
    threshold: float
    run_dir: Path
    log_path: Path
    router_log_path: Path
    decisions_path: Path
    SERVICE = "router"
    SERVICE_LOG = "router_log_path"

    def endpoint(self, model: str = AUTO, **kw):
        """The lab's client on the gateway: model "auto" (routed), "small" or "large" (direct)."""
        from llmarch_lab import LabError
        from llmarch_lab.llm.endpoint import Endpoint

        if model not in (AUTO, SMALL, LARGE):
            raise LabError(f"gateway model {model!r}: use one of {AUTO}, {SMALL}, {LARGE}")
        return Endpoint(self.base_url, model, **{"api_key_env": self.api_key_env, **kw})

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"}

    def decisions(self):
        """One row per routed request, in arrival order."""
        return lp.read_jsonl_frame(self.decisions_path, DECISION_COLUMNS)


def launch(small_base_url: str, small_name: str, large_base_url: str, large_name: str, router_path, threshold: float,
           log_path, *, run_dir=None, ready_timeout_s: float = 180.0, router_timeout_s: float = 10.0) -> RoutedGateway:
    """Start the router service and the LiteLLM proxy in front of the two engines (OpenAI base URLs
    ending in /v1, serving small_name / large_name); wait until both answer; return the gateway
    (use it as a context manager: every child is stopped on exit, also when starting fails).

    router_path: a router saved with routing.save; threshold: score >= threshold goes large."""
    import math

    from llmarch_lab import LabError
    from llmarch_lab.labs.cost import routing

    router = routing.load(router_path)  # a bad file fails here, before any process starts
    if getattr(router, "pays_small_always", False):
        raise LabError(f"router file {router_path}: {router!r} is a cascade (it needs the small model's answer); "
                       "the gateway routes before any model is called")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise LabError(f"gateway threshold {threshold!r}: must be a number") from None
    if math.isnan(threshold):
        raise LabError("gateway threshold: must be a number, got NaN")
    for what, url in (("small_base_url", small_base_url), ("large_base_url", large_base_url)):
        if not str(url).startswith(("http://", "https://")):
            raise LabError(f"gateway {what} {url!r}: must be an OpenAI base URL (http://host:port/v1)")
    py = lp.litellm_python(who="cost gateway")
    log_path, run_dir = lp.run_folders(log_path, run_dir)
    router_port, proxy_port = lp.free_ports(2)
    lp.write_shim(run_dir / "lab_router_hook.py", hook.__file__, "llmarch_cost_gateway", "router_hook", "router_hook",
                  writer="llmarch_lab.labs.cost.gateway.launch")
    lp.write_config(run_dir / "config.yaml", litellm_config(small_base_url, small_name, large_base_url, large_name))
    gw = RoutedGateway(f"http://127.0.0.1:{proxy_port}/v1", f"http://127.0.0.1:{router_port}", small_base_url, small_name,
                       large_base_url, large_name, Path(router_path), threshold, run_dir, log_path,
                       log_path.with_suffix(".router.log"), run_dir / "decisions.jsonl",
                       api_key_env=lp.new_master_key(proxy_port))
    cmd = [sys.executable, "-m", "llmarch_lab.labs.cost.gateway", "serve-router", "--router", str(Path(router_path).resolve()),
           "--threshold", repr(threshold), "--port", str(router_port), "--decisions", str(gw.decisions_path),
           "--parent-pid", str(os.getpid())]
    return gw.start(cmd, gw.router_url, run_dir / "config.yaml", proxy_port,
                    {ENV_URL: gw.router_url, ENV_TIMEOUT: str(router_timeout_s)},
                    lp.child_env(("LLMARCH_ROUTER_",)), ready_timeout_s, py, who="cost gateway")


def litellm_config(small_base_url: str, small_name: str, large_base_url: str, large_name: str) -> dict:
    def deployment(public: str, base_url: str, name: str) -> dict:
        return {"model_name": public, "litellm_params": {"model": f"openai/{name}", "api_base": base_url, "api_key": "none"}}

    return {
        # "auto" is rewritten by the hook before routing; its own entry (the large engine) lists it
        # in /v1/models and is where a request would land if the hook were not loaded.
        "model_list": [deployment(SMALL, small_base_url, small_name), deployment(LARGE, large_base_url, large_name),
                       deployment(AUTO, large_base_url, large_name)],
        "litellm_settings": {"callbacks": ["lab_router_hook.router_hook"], "drop_params": True, "num_retries": 0,
                             "request_timeout": 600},
    }
