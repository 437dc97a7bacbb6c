"""The router service (the lab's .venv: Starlette + uvicorn): POST /route scores a prompt with a
fitted router and appends the decision to decisions.jsonl. Started by launch.launch as
`python -m llmarch_lab.labs.cost.gateway serve-router`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from llmarch_lab.labs.cost.gateway.hook import decide, prompt_text, text_sha


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
