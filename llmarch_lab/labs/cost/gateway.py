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

The hook class lives in this file and LiteLLM loads it through a shim that loads this file by path
(llm.litellm_proxy.write_shim), so this module imports only the standard library at the top.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

SMALL, LARGE, AUTO = "small", "large", "auto"
ENV_URL = "LLMARCH_ROUTER_URL"
ENV_TIMEOUT = "LLMARCH_ROUTER_TIMEOUT_S"
_COMPLETION_CALLS = ("completion", "acompletion")


# ====================================================================== shared by both sides


def prompt_text(messages) -> str:
    """The text a router scores: the last user message's content (text parts of a list content
    joined by newlines); a plain string is returned as is."""
    if isinstance(messages, str):
        return messages
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "\n".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and p.get("type") == "text")
            return "" if c is None else str(c)
    return ""


def decide(score: float, threshold: float) -> str:
    """large when score >= threshold (routing.curve's convention)."""
    return LARGE if score >= threshold else SMALL


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ====================================================================== the router service (lab venv)


def make_router_app(router, threshold: float, decisions_path: Path | None = None):
    """The Starlette app around a fitted router. Scoring runs in the threadpool (CPU-bound), one at
    a time (a lock: sklearn / torch models are not promised thread-safe)."""
    import pandas as pd
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = threading.Lock()

    def route_one(body: dict) -> dict:
        text = body["text"] if isinstance(body.get("text"), str) else prompt_text(body.get("messages"))
        with lock:
            t0 = time.perf_counter()
            score = float(router.score(pd.DataFrame({"prompt": [text]}))[0])
            ms = (time.perf_counter() - t0) * 1000
            row = {"ts": time.time(), "request_id": str(body.get("request_id") or ""), "score": score,
                   "model": decide(score, threshold), "router_ms": ms, "chars": len(text), "text_sha": text_sha(text)}
            if decisions_path is not None and body.get("record", True):
                with open(decisions_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
        return row

    async def route(request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        return JSONResponse(await run_in_threadpool(route_one, body))

    async def health(request):
        return JSONResponse({"ok": True, "router": repr(router), "threshold": threshold})

    return Starlette(routes=[Route("/health", health), Route("/route", route, methods=["POST"])])


def serve_router(router_path: str, threshold: float, port: int, decisions_path: str = "", parent_pid: int = 0) -> None:
    import pandas as pd

    from llmarch_lab.labs.cost import routing
    from llmarch_lab.llm import litellm_proxy

    if parent_pid:
        litellm_proxy.watch_parent(parent_pid)
    router = routing.load(router_path)
    router.score(pd.DataFrame({"prompt": ["warm-up"]}))  # load lazily-loaded models before /health answers
    app = make_router_app(router, threshold, Path(decisions_path) if decisions_path else None)
    litellm_proxy.serve(app, port)


# ====================================================================== the LiteLLM hook (litellm venv)


def router_hook_class():
    """Build the LiteLLM CustomLogger subclass (imports litellm: call it in that environment)."""
    import httpx
    from litellm.integrations.custom_logger import CustomLogger

    class LabRouter(CustomLogger):
        """pre_call: model "auto" -> ask the router service, rewrite data["model"]; response headers:
        the decision. Calls naming "small" / "large" pass straight through."""

        def __init__(self, **kwargs):
            self.router_url = os.environ.get(ENV_URL, "").rstrip("/")
            self.timeout = float(os.environ.get(ENV_TIMEOUT, "10"))
            self._clients: dict = {}
            self._decided: OrderedDict = OrderedDict()  # call id -> headers, until the response goes out
            super().__init__(**kwargs)

        def _client(self):
            import asyncio

            loop = asyncio.get_running_loop()
            c = self._clients.get(id(loop))
            if c is None:
                c = self._clients[id(loop)] = httpx.AsyncClient(timeout=self.timeout)
            return c

        async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
            if call_type not in _COMPLETION_CALLS or data.get("model") != AUTO:
                return data
            rid = str(data.get("litellm_call_id") or "")
            t0 = time.perf_counter()
            headers = {}
            try:
                r = await self._client().post(self.router_url + "/route",
                                              json={"messages": data.get("messages"), "request_id": rid})
                r.raise_for_status()
                res = r.json()
                model = res["model"] if res.get("model") in (SMALL, LARGE) else LARGE
                headers["x-llmarch-route-score"] = repr(float(res.get("score")))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:  # fail over to quality
                print(f"llmarch-router: /route failed ({type(e).__name__}: {e}); sending to {LARGE}",
                      file=sys.stderr, flush=True)
                model, headers["x-llmarch-route-fallback"] = LARGE, type(e).__name__
            headers["x-llmarch-route"] = model
            headers["x-llmarch-router-ms"] = f"{(time.perf_counter() - t0) * 1000:.3f}"
            data["model"] = model
            if rid:
                self._decided[rid] = headers
                while len(self._decided) > 10000:  # a response that never went out leaves no leak
                    self._decided.popitem(last=False)
            return data

        async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict, response,
                                                        request_headers=None, litellm_call_info=None):
            return self._decided.pop(str(data.get("litellm_call_id") or ""), None)

    return LabRouter


def router_hook():
    """The hook instance LiteLLM's litellm_settings.callbacks names (through the shim)."""
    return router_hook_class()()


# ====================================================================== launch (lab venv)


@dataclass
class RoutedGateway:
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
    api_key_env: str = ""  # NAME of the variable (in this process) holding the proxy's master key
    procs: dict = field(default_factory=dict)  # name -> Popen
    start_s: float = 0.0

    def endpoint(self, model: str = AUTO, **kw):
        """The lab's client on the gateway: model "auto" (routed), "small" or "large" (direct)."""
        from llmarch_lab import LabError
        from llmarch_lab.llm.endpoint import Endpoint

        if model not in (AUTO, SMALL, LARGE):
            raise LabError(f"gateway model {model!r}: use one of {AUTO}, {SMALL}, {LARGE}")
        return Endpoint(self.base_url, model, **{"api_key_env": self.api_key_env, **kw})

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"}

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def decisions(self):
        """One row per routed request, in arrival order."""
        import pandas as pd

        cols = ["ts", "request_id", "score", "model", "router_ms", "chars", "text_sha"]
        rows = []
        if self.decisions_path.exists():
            rows = [json.loads(line) for line in self.decisions_path.read_text().splitlines() if line.strip()]
        return pd.DataFrame(rows, columns=cols)

    def log_tail(self, n: int = 15) -> str:
        from llmarch_lab.llm import litellm_proxy

        return litellm_proxy.log_tail((self.log_path, self.router_log_path), n)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each child's process group (proxy first), SIGKILL what is left after `timeout`."""
        from llmarch_lab.llm import litellm_proxy

        litellm_proxy.stop_all(self.procs, ("litellm", "router"), timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from llmarch_lab.llm import litellm_proxy

        self.stop()
        litellm_proxy.drop_master_key(self.api_key_env)


def launch(small_base_url: str, small_name: str, large_base_url: str, large_name: str, router_path, threshold: float,
           log_path, *, run_dir=None, ready_timeout_s: float = 180.0, router_timeout_s: float = 10.0) -> RoutedGateway:
    """Start the router service and the LiteLLM proxy in front of the two engines (OpenAI base URLs
    ending in /v1, serving small_name / large_name); wait until both answer; return the gateway
    (use it as a context manager: every child is stopped on exit, also when starting fails).

    router_path: a router saved with routing.save; threshold: score >= threshold goes large."""
    import math

    from llmarch_lab import LabError
    from llmarch_lab.labs.cost import routing
    from llmarch_lab.llm import litellm_proxy as lp

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
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir) if run_dir else log_path.parent / f"{log_path.stem}.d"
    run_dir.mkdir(parents=True, exist_ok=True)
    router_port, proxy_port = lp.free_ports(2)
    lp.write_shim(run_dir / "lab_router_hook.py", __file__, "llmarch_cost_gateway", "router_hook", "router_hook",
                  writer="llmarch_lab.labs.cost.gateway.launch")
    lp.write_config(run_dir / "config.yaml", _litellm_config(small_base_url, small_name, large_base_url, large_name))
    gw = RoutedGateway(f"http://127.0.0.1:{proxy_port}/v1", f"http://127.0.0.1:{router_port}", small_base_url, small_name,
                       large_base_url, large_name, Path(router_path), threshold, run_dir, log_path,
                       log_path.with_suffix(".router.log"), run_dir / "decisions.jsonl",
                       api_key_env=lp.new_master_key(proxy_port))
    base_env = lp.child_env(("LLMARCH_ROUTER_",))
    logs = (gw.log_path, gw.router_log_path)
    t0 = time.perf_counter()
    deadline = t0 + ready_timeout_s
    try:
        gw.procs["router"] = lp.spawn(
            [sys.executable, "-m", "llmarch_lab.labs.cost.gateway", "serve-router", "--router", str(Path(router_path).resolve()),
             "--threshold", repr(threshold), "--port", str(router_port), "--decisions", str(gw.decisions_path),
             "--parent-pid", str(os.getpid())],
            gw.router_log_path, base_env)
        gw.procs["litellm"] = lp.start_proxy(
            run_dir / "config.yaml", proxy_port, log_path,
            lp.proxy_env(gw.api_key_env, {ENV_URL: gw.router_url, ENV_TIMEOUT: str(router_timeout_s)}, base=base_env),
            python=py)
        lp.wait_healthy("router", gw.procs["router"], gw.router_url + "/health", deadline, logs, who="cost gateway")
        lp.wait_healthy("litellm", gw.procs["litellm"], lp.proxy_health_url(proxy_port), deadline, logs, who="cost gateway")
    except BaseException:
        gw.stop()
        lp.drop_master_key(gw.api_key_env)
        raise
    gw.start_s = time.perf_counter() - t0
    return gw


def _litellm_config(small_base_url: str, small_name: str, large_base_url: str, large_name: str) -> dict:
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


# ====================================================================== the benchmark (lab venv)


def overhead(gw: RoutedGateway, small_base_url: str, prompts, *, small_name: str = "", max_tokens: int = 8,
             rounds: int = 1, block: int = 2, warmup: int = 1, timeout_s: float = 120.0) -> dict:
    """TTFT on the same prompts, one request at a time (the serving lab's load generator):
    the small engine directly, the gateway with model "small" (proxy, no router), the gateway with
    model "auto" (proxy + router).

    Order: the prompts are taken `block` at a time and each block goes through the three targets in
    turn (engine p1 p2, proxy p1 p2, auto p1 p2, next block ...), `rounds` times with the target
    order rotated. Fine interleaving spreads the drift of a shared CPU over all targets, and with
    block >= 2 no engine ever sees the same prompt twice in a row, so llama.cpp's reuse of the
    previous prompt's KV prefix gives no target an edge (block=1 would hand it to the second and
    third target).

    Returns percentiles (common.stats) of ttft_engine_ms, ttft_proxy_small_ms, ttft_auto_small_ms,
    ttft_auto_large_ms, router_score_ms (the service's scoring time) and
    router_overhead_ms = p50 TTFT(auto, routed small) - p50 TTFT(small via proxy) on the prompts
    routed small; proxy_overhead_ms = p50 TTFT(small via proxy) - p50 TTFT(engine) (and the
    *_paired_ms medians of the per-prompt differences); the measured
    large-model share vs the offline share (the same prompts scored in-process with the router);
    decision agreement; and `requests`, a DataFrame with one row per timed request."""
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.common.stats import percentiles
    from llmarch_lab.labs.cost import routing
    from llmarch_lab.llm import load
    from llmarch_lab.llm.endpoint import Endpoint

    prompts = [str(p) for p in prompts]
    if not prompts:
        raise LabError("overhead: no prompts")
    if len(set(prompts)) != len(prompts):
        raise LabError("overhead: prompts must be distinct (a repeated prompt hits llama.cpp's prefix cache)")
    if block < 2 and len(prompts) > 1:
        raise LabError(f"overhead: block={block}: use >= 2 (block=1 sends each prompt twice in a row to the small engine)")
    targets = {"engine": Endpoint(small_base_url, small_name or gw.small_name, timeout_s=timeout_s),
               "proxy_small": gw.endpoint(SMALL, timeout_s=timeout_s),
               "auto": gw.endpoint(AUTO, timeout_s=timeout_s)}

    def run(target, ids):
        rs = [load.Request(i, [{"role": "user", "content": prompts[i] if i >= 0 else f"Warm-up {i}: say hi."}],
                           max_tokens) for i in ids]
        recs, _ = load.run_level(target, iter(rs), "concurrent", 1, max_requests=len(rs), max_seconds=timeout_s * len(rs))
        return recs

    for name in ("engine", "proxy_small"):  # not "auto": warm-ups must not enter the decisions
        if warmup:
            run(targets[name], list(range(-warmup, 0)))
    rows, decided = [], []
    names = list(targets)
    blocks = [list(range(i, min(i + block, len(prompts)))) for i in range(0, len(prompts), block)]
    if len(blocks) > 1 and len(blocks[-1]) == 1:  # a lone last prompt would go to the small engine twice in a row
        blocks[-2] += blocks.pop()
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for ids in blocks:
            for name in order:
                n_before = len(gw.decisions())
                recs = run(targets[name], ids)
                route = [SMALL] * len(ids)
                if name == "auto":
                    d = gw.decisions().iloc[n_before:].reset_index(drop=True)
                    # one request at a time: the k-th new decision is the k-th prompt (checked by hash)
                    if len(d) != len(ids) or list(d["text_sha"]) != [text_sha(prompts[i]) for i in ids]:
                        raise LabError(f"overhead: {len(d)} router decisions for {len(ids)} auto requests do not line "
                                       f"up with the prompts (decisions: {gw.decisions_path})")
                    route = list(d["model"])
                    decided.append(d.assign(round=r, id=ids))
                for rec, rt in zip(recs, route):
                    rows.append({"round": r, "target": name, "id": rec.id, "route": rt, "ttft_ms": rec.ttft_ms,
                                 "e2e_ms": rec.e2e_ms, "output_tokens": rec.output_tokens, "error": rec.error,
                                 "chars": len(prompts[rec.id])})
    df = pd.DataFrame(rows)
    ok = df[(df["error"] == "") & df["ttft_ms"].notna()]
    dec = pd.concat(decided, ignore_index=True)

    router = routing.load(gw.router_path)
    offline_scores = np.asarray(router.score(pd.DataFrame({"prompt": prompts})), dtype=float)
    offline = np.array([decide(s, gw.threshold) for s in offline_scores])
    first = dec[dec["round"] == 0].sort_values("id")
    measured = first["model"].to_numpy()
    small_ids = set(first.loc[first["model"] == SMALL, "id"])

    def t(target, route=None, ids=None):
        x = ok[ok["target"] == target]
        if route is not None:
            x = x[x["route"] == route]
        if ids is not None:
            x = x[x["id"].isin(ids)]
        return x["ttft_ms"]

    out: dict = {"n_prompts": len(prompts), "rounds": rounds, "max_tokens": max_tokens,
                 "n_errors": int((df["error"] != "").sum()), "threshold": gw.threshold}
    out |= percentiles(t("engine"), "ttft_engine_ms")
    out |= percentiles(t("proxy_small"), "ttft_proxy_small_ms")
    out |= percentiles(t("auto", SMALL), "ttft_auto_small_ms", required=False)
    out |= percentiles(t("auto", LARGE), "ttft_auto_large_ms", required=False)
    out |= percentiles(dec["router_ms"], "router_score_ms")
    if small_ids:  # paired: the same prompts (those routed small) through the proxy with and without the router
        out["router_overhead_ms"] = float(t("auto", SMALL, small_ids).median() - t("proxy_small", ids=small_ids).median())
    out["proxy_overhead_ms"] = float(t("proxy_small").median() - t("engine").median())
    # the same differences taken per (round, prompt) first: less sensitive to a noisy neighbour on the CPU
    wide = ok.pivot_table(index=["round", "id"], columns="target", values="ttft_ms")
    route_of = dict(zip(first["id"], first["model"]))
    routed_small = wide[[route_of.get(i) == SMALL for i in wide.index.get_level_values("id")]]
    if {"auto", "proxy_small"} <= set(wide.columns) and len(routed_small):
        out["router_overhead_paired_ms"] = float((routed_small["auto"] - routed_small["proxy_small"]).median())
    if {"engine", "proxy_small"} <= set(wide.columns):
        out["proxy_overhead_paired_ms"] = float((wide["proxy_small"] - wide["engine"]).median())
    out["large_share_measured"] = float((dec["model"] == LARGE).mean())
    out["large_share_offline"] = float((offline == LARGE).mean())
    out["decision_agreement"] = float((measured == offline).mean())
    out["score_max_abs_diff"] = float(np.max(np.abs(first["score"].to_numpy(dtype=float) - offline_scores)))
    out["requests"] = df
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.cost.gateway")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-router", help="the router service (started by launch)")
    s.add_argument("--router", required=True)
    s.add_argument("--threshold", type=float, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--decisions", default="")
    s.add_argument("--parent-pid", type=int, default=0)
    a = ap.parse_args(argv)
    serve_router(a.router, a.threshold, a.port, a.decisions, a.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
