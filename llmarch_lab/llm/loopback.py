"""A trivial OpenAI-compatible streaming server on 127.0.0.1 (Starlette + uvicorn): no model, it
streams `tokens` fixed chunks at once. Two uses:

- the load generator's own ceiling (benchmarks/serving_ceiling.py): how many requests/s the
  client sustains when the server costs nothing, so the client is never the bottleneck;
- fault injection for the robustness tests: `--malformed-every K` sends an unparseable chunk
  every K chunks, `--die-after N` kills the server process after N requests (an engine crash).

    python -m llmarch_lab.llm.loopback --port 8123 --tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import time


def make_app(tokens: int = 16, malformed_every: int = 0, die_after: int = 0, model: str = "loopback",
             api_key: str = ""):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    served = {"n": 0}

    def denied(request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"message": "invalid API key"}}, status_code=401)
        return None

    async def models(request):
        if (d := denied(request)) is not None:
            return d
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def health(request):  # unauthenticated, like vLLM's
        return JSONResponse({})

    async def chat(request):
        if (d := denied(request)) is not None:
            return d
        body = await request.json()
        served["n"] += 1
        if die_after and served["n"] > die_after:
            os._exit(3)  # a crash, not a clean shutdown: connections drop mid-flight
        n = int(body.get("max_tokens") or tokens)
        created = int(time.time())

        async def events():
            for i in range(n):
                if malformed_every and i and i % malformed_every == 0:
                    yield b"data: {not json\n\n"
                chunk = {"id": "x", "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [{"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            usage = {"id": "x", "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                     "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}}
            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/health", health), Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


def main(argv=None):
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--malformed-every", type=int, default=0)
    ap.add_argument("--die-after", type=int, default=0)
    a = ap.parse_args(argv)
    # The key comes from the environment, never the command line (ps would show it).
    app = make_app(a.tokens, a.malformed_every, a.die_after, api_key=os.environ.get("LOOPBACK_API_KEY", ""))
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False, backlog=4096)


def start(port: int = 0, tokens: int = 16, malformed_every: int = 0, die_after: int = 0, log_path=None,
          api_key: str = ""):
    """Start the server in its own process (own core, own GIL) and wait for it; returns (proc, base_url)."""
    import subprocess
    import sys

    import httpx

    from llmarch_lab import LabError
    from llmarch_lab.labs.serving.engines import free_port

    port = port or free_port()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "llmarch_lab.llm.loopback", "--port", str(port),
                             "--tokens", str(tokens), "--malformed-every", str(malformed_every),
                             "--die-after", str(die_after)], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "LOOPBACK_API_KEY": api_key})
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        if proc.poll() is not None:
            raise LabError(f"loopback server exited with code {proc.returncode}")
        try:
            if httpx.get(base.removesuffix("/v1") + "/health", timeout=1.0).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise LabError(f"loopback server not up at {base}")


if __name__ == "__main__":
    main()
