"""A trivial OpenAI-compatible server on 127.0.0.1 (Starlette + uvicorn): no model, it streams
`tokens` fixed chunks (" t0", " t1", ...), at once unless told to wait between them. Uses:

- the load generator's own ceiling (benchmarks/serving_ceiling.py): how many requests/s the
  client sustains when the server costs nothing, so the client is never the bottleneck;
- fault injection for the robustness tests: `--malformed-every K` sends an unparseable chunk
  every K chunks, `--die-after N` kills the server process after N requests (an engine crash),
  `--chunk-delay-ms D` waits D ms between chunks (a known inter-token latency);
- ground truth for measuring the measurers (benchmarks/serving_fidelity.py): `--ttft-ms T`
  sends the first chunk T ms after the request arrived, `--chunk-delay-ms D` the next ones every
  D ms after it (on a fixed schedule: a late send does not shift the later ones),
  `--max-concurrency C` streams at most C requests at a time (the others queue, FCFS, and their
  TTFT includes the wait), and every request's arrival and chunk send times are recorded
  server-side: GET /truth returns them, POST /truth/reset clears them;
- imitations of other servers' stream formats (`--api tgi|triton`, llm/api_presets.py): TGI's
  Messages API (`data:` without a space, the role in every chunk, a `:` keep-alive comment,
  an empty end-of-sequence chunk on a natural stop, usage in a chunk of its own only with
  stream_options.include_usage, `data:[DONE]`, any `model` accepted, GET /health) and Triton's
  OpenAI frontend (a role-only first chunk, `--tokens-per-chunk` tokens per chunk,
  finish_reason always "stop", usage only with include_usage and not at all with `--no-usage`,
  422 for a request field outside OpenAI's schema, 400 for an unknown model, GET /health/ready);
  for both a natural answer is `--tokens` long (a larger max_tokens stops there), and /metrics
  exports that server's queue and batch gauges with its own names, written as the real one does;
- the endpoint client's tests (tests/test_endpoint.py), deterministically:
  /v1/chat/completions   streaming or not (stream=false: one message " t0 t1 ...", with usage)
  /v1/completions        greedy text + OpenAI-format logprobs: the next-token logits over VOCAB
                         are how often each token string occurs in the text so far (str.count),
                         log-softmaxed; top_logprobs = the `logprobs` best (ties in VOCAB order)
  /v1/embeddings         per text, 26 counts of the letters a..z (lower-cased); the data list
                         comes back in reverse order, so only its `index` fields give the order
  An `api_key` (LOOPBACK_API_KEY for the process) makes every /v1 route demand it (HTTP 401).

    python -m llmarch_lab.llm.loopback --port 8123 --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from dataclasses import dataclass, field

from llmarch_lab.common.procs import free_port  # noqa: F401  (re-exported: callers use loopback.free_port)

VOCAB = ("yes", "no", "maybe", " yes", " no", " the", ".", "\n")


def next_token_logprobs(text: str) -> dict:
    """{token: log-prob} over VOCAB after `text` (the rule in the module docstring)."""
    logits = [float(text.count(t)) for t in VOCAB]
    z = max(logits) + math.log(sum(math.exp(x - max(logits)) for x in logits))
    return {t: x - z for t, x in zip(VOCAB, logits)}


def _complete(prompt: str, n: int, top_n: int) -> tuple[str, dict]:
    text, tokens, token_lps, tops = "", [], [], []
    for _ in range(n):
        lps = next_token_logprobs(prompt + text)
        ranked = sorted(VOCAB, key=lambda t: (-lps[t], VOCAB.index(t)))
        tok = ranked[0]
        tokens.append(tok)
        token_lps.append(lps[tok])
        tops.append({t: lps[t] for t in ranked[:top_n]})
        text += tok
    offsets = [len(prompt) + sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return text, {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}


def _letters(text: str) -> list[float]:
    low = text.lower()
    return [float(low.count(chr(ord("a") + i))) for i in range(26)]


# Triton's chat request schema (openai_frontend/schemas/openai.py, extra="forbid"): the fields
# the imitation accepts; any other is a 422 as there.
TRITON_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options",
                 "temperature", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty",
                 "logit_bias", "logprobs", "top_logprobs", "user", "tools", "tool_choice", "response_format",
                 "parallel_tool_calls", "function_call", "functions"}
APIS = ("openai", "tgi", "triton")


def make_app(tokens: int = 16, malformed_every: int = 0, die_after: int = 0, model: str = "loopback",
             api_key: str = "", chunk_delay_ms: float = 0.0, ttft_ms: float = 0.0, max_concurrency: int = 0,
             api: str = "openai", tokens_per_chunk: int = 1, usage_counts: bool = True):
    """The loopback's Starlette app (see Loopback for what each setting does)."""
    if api not in APIS:
        raise ValueError(f"api {api!r}: one of {', '.join(APIS)}")
    return Loopback(tokens, malformed_every, die_after, model, api_key, chunk_delay_ms, ttft_ms, max_concurrency,
                    api, tokens_per_chunk, usage_counts).app()


@dataclass
class Loopback:
    """An OpenAI-compatible server with exactly known timing: the first chunk `ttft_ms` after a
    request gets one of `max_concurrency` slots (0 = no limit), then one every `chunk_delay_ms`;
    `api` imitates TGI's or Triton's stream format; `malformed_every` breaks every Nth chunk;
    `die_after` crashes the process after N requests; the truth (arrival and send times of every
    streamed request) is served at /truth."""

    tokens: int = 16
    malformed_every: int = 0
    die_after: int = 0
    model: str = "loopback"
    api_key: str = ""
    chunk_delay_ms: float = 0.0
    ttft_ms: float = 0.0
    max_concurrency: int = 0
    api: str = "openai"
    tokens_per_chunk: int = 1
    usage_counts: bool = True
    served: int = 0
    truth: list = field(default_factory=list)  # per streamed request: arrival and send times (s)
    state: dict = field(default_factory=lambda: {"waiting": 0, "running": 0, "done": 0, "gen": 0, "secs": 0.0,
                                                  "queued_s": 0.0})

    def app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.slots = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        return Starlette(routes=[
            Route("/health", self.health), Route("/health/ready", self.health), Route("/metrics", self.metrics_text),
            Route("/v1/models", self.models),
            Route("/truth", self.truth_get), Route("/truth/reset", self.truth_reset, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    def denied(self, request):
        from starlette.responses import JSONResponse

        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "invalid API key"}}, status_code=401)
        return None

    async def models(self, request):
        from starlette.responses import JSONResponse

        if (d := self.denied(request)) is not None:
            return d
        served_id = "loopback/model-id" if self.api == "tgi" else self.model  # TGI lists its model id, takes any name
        return JSONResponse({"object": "list", "data": [{"id": served_id, "object": "model"}]})

    async def health(self, request):  # unauthenticated, like vLLM's
        from starlette.responses import JSONResponse

        return JSONResponse({})

    def metric_lines(self) -> list[str] | None:
        """The imitated server's /metrics lines (None: the plain loopback has none).
        Written by hand, not with prometheus_client: the imitated servers' counters carry no
        _total suffix, which prometheus_client's Counter would add."""
        st = self.state
        if self.api == "tgi":
            return ["# TYPE tgi_queue_size gauge", f"tgi_queue_size {st['waiting']}",
                    "# TYPE tgi_batch_current_size gauge", f"tgi_batch_current_size {st['running']}",
                    "# TYPE tgi_request_generated_tokens histogram", f"tgi_request_generated_tokens_sum {st['gen']}",
                    f"tgi_request_generated_tokens_count {st['done']}",
                    "# TYPE tgi_request_duration histogram", f"tgi_request_duration_sum {st['secs']}",
                    f"tgi_request_duration_count {st['done']}",
                    "# TYPE tgi_request_queue_duration histogram", f"tgi_request_queue_duration_sum {st['queued_s']}",
                    f"tgi_request_queue_duration_count {st['done']}"]
        if self.api == "triton":
            lab = f'{{model="{self.model}",version="1"}}'
            return ["# TYPE nv_inference_request_success counter", f"nv_inference_request_success{lab} {st['done']}",
                    "# TYPE nv_inference_queue_duration_us counter",
                    f"nv_inference_queue_duration_us{lab} {int(st['queued_s'] * 1e6)}",
                    "# TYPE nv_inference_pending_request_count gauge",
                    f"nv_inference_pending_request_count{lab} {st['waiting']}"]
        return None

    async def metrics_text(self, request):
        from starlette.responses import JSONResponse, PlainTextResponse

        lines = self.metric_lines()
        if lines is None:
            return JSONResponse({"error": "no /metrics on the plain loopback"}, status_code=404)
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    def triton_error(self, body: dict):
        """Triton's OpenAI frontend's refusal of this body, or None."""
        from starlette.responses import JSONResponse

        extra = sorted(set(body) - TRITON_FIELDS)
        if extra:  # pydantic's extra="forbid", as FastAPI reports it
            return JSONResponse({"detail": [{"type": "extra_forbidden", "loc": ["body", k],
                                             "msg": "Extra inputs are not permitted"} for k in extra]}, status_code=422)
        if body.get("model") != self.model:
            return JSONResponse({"detail": f"Unknown model: {body.get('model')}"}, status_code=400)
        if body.get("stream_options") and not body.get("stream"):
            return JSONResponse({"detail": "`stream_options` can only be used when `stream` is True"}, status_code=400)
        return None

    async def chat(self, request):
        from starlette.responses import JSONResponse, StreamingResponse

        arrived = time.perf_counter()  # as soon as the request's headers are in: the truth's t0
        if (d := self.denied(request)) is not None:
            return d
        body = await request.json()
        self.served += 1
        if self.die_after and self.served > self.die_after:
            os._exit(3)  # a crash, not a clean shutdown: connections drop mid-flight
        if self.api == "triton" and (err := self.triton_error(body)) is not None:
            return err
        asked = int(body.get("max_completion_tokens") or body.get("max_tokens") or self.tokens)
        # The imitations answer naturally in `tokens` tokens (an end-of-sequence then); the plain
        # loopback always streams what was asked.
        n = asked if self.api == "openai" else min(asked, self.tokens)
        eos = self.api != "openai" and n < asked
        n_usage = n + (1 if eos and self.api == "tgi" else 0)  # TGI counts the end-of-sequence token
        req = {"arrived": arrived, "n": n, "eos": eos, "created": int(time.time()), "n_usage": n_usage,
               "usage": {"prompt_tokens": 8, "completion_tokens": n_usage, "total_tokens": 8 + n_usage},
               "want_usage": bool((body.get("stream_options") or {}).get("include_usage"))}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": "".join(f" t{i}" for i in range(n))}
            return JSONResponse({"id": "x", "object": "chat.completion", "created": req["created"], "model": self.model,
                                 "choices": [{"index": 0, "message": msg, "finish_reason": "length"}],
                                 "usage": req["usage"]})
        return StreamingResponse(self.events(req), media_type="text/event-stream")

    def frame(self, obj) -> bytes:  # TGI (axum) writes `data:` with no space
        return (b"data:" if self.api == "tgi" else b"data: ") + json.dumps(obj).encode() + b"\n\n"

    def chunk(self, req: dict, text: str, last: bool, first: bool = False) -> dict:
        created, model = req["created"], self.model
        if self.api == "tgi":
            return {"object": "chat.completion.chunk", "id": "", "created": created, "model": "loopback/model-id",
                    "system_fingerprint": "3.1.2-dev0-native",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": text, "tool_calls": None},
                                 "logprobs": None, "finish_reason": ("stop" if req["eos"] else "length") if last else None}],
                    "usage": None}
        if self.api == "triton":
            delta = {"content": text, "function_call": None, "role": "assistant" if first else None}
            return {"id": "cmpl-loopback", "choices": [{"delta": delta, "logprobs": None,
                                                        "finish_reason": "stop" if last else None, "index": 0}],
                    "created": created, "model": model, "system_fingerprint": None,
                    "object": "chat.completion.chunk", "usage": None}
        return {"id": "x", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}

    async def events(self, req: dict):
        """The stream of one request, on the known timing; its truth is recorded at the end."""
        st, api, n, eos = self.state, self.api, req["n"], req["eos"]
        rec = {"arrived": req["arrived"], "sent": []}
        st["waiting"] += 1
        try:
            if self.slots is not None:
                await self.slots.acquire()
        finally:  # also when the client went away while queued
            st["waiting"] -= 1
        st["running"] += 1
        try:
            start = time.perf_counter()  # the first token is due ttft_ms after the slot is free
            st["queued_s"] += start - req["arrived"]
            if api == "triton":
                yield self.frame(self.chunk(req, "", False, first=True))  # the role, no token yet
            per = max(1, self.tokens_per_chunk) if api == "triton" else 1
            for i in range(0, n, per):
                due = start + self.ttft_ms / 1000 + i * self.chunk_delay_ms / 1000
                # (a loop: uvloop's timers are millisecond-grained and can wake early)
                while (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                if self.malformed_every and i and i % self.malformed_every == 0:
                    yield b"data: {not json\n\n"
                text = "".join(f" t{j}" for j in range(i, min(n, i + per)))
                rec["sent"].append(time.perf_counter())
                yield self.frame(self.chunk(req, text, last=i + per >= n and not (eos and api == "tgi")))
                if api == "tgi" and i == 0:
                    yield b":\n\n"  # axum's keep-alive comment
            if eos and api == "tgi":  # the end-of-sequence token: empty content
                yield self.frame(self.chunk(req, "", last=True))
            if api == "openai" or (req["want_usage"] and self.usage_counts):
                yield self.frame({"id": "x", "object": "chat.completion.chunk", "created": req["created"],
                                  "model": self.model, "choices": [], "usage": req["usage"]})
            yield b"data:[DONE]\n\n" if api == "tgi" else b"data: [DONE]\n\n"
        finally:
            st["running"] -= 1
            st["done"] += 1
            st["gen"] += req["n_usage"]
            st["secs"] += time.perf_counter() - req["arrived"]
            if self.slots is not None:
                self.slots.release()
            self.truth.append(rec)

    async def truth_get(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"ttft_ms": self.ttft_ms, "itl_ms": self.chunk_delay_ms,
                             "max_concurrency": self.max_concurrency, "requests": self.truth})

    async def truth_reset(self, request):
        from starlette.responses import JSONResponse

        self.truth.clear()
        return JSONResponse({})

    async def completions(self, request):
        from starlette.responses import JSONResponse

        if (d := self.denied(request)) is not None:
            return d
        body = await request.json()
        prompt, n = str(body.get("prompt", "")), int(body.get("max_tokens") or 16)
        text, lp = _complete(prompt, n, int(body.get("logprobs") or 0))
        choice = {"index": 0, "text": text, "finish_reason": "length",
                  "logprobs": lp if body.get("logprobs") is not None else None}
        return JSONResponse({"id": "x", "object": "text_completion", "created": int(time.time()), "model": self.model,
                             "choices": [choice], "usage": {"prompt_tokens": len(prompt.split()),
                                                            "completion_tokens": n}})

    async def embeddings(self, request):
        from starlette.responses import JSONResponse

        if (d := self.denied(request)) is not None:
            return d
        inputs = (await request.json()).get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        data = [{"object": "embedding", "index": i, "embedding": _letters(t)} for i, t in enumerate(inputs)]
        return JSONResponse({"object": "list", "model": self.model, "data": data[::-1],
                             "usage": {"prompt_tokens": sum(len(t.split()) for t in inputs), "total_tokens": 0}})


def main(argv=None):
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--malformed-every", type=int, default=0)
    ap.add_argument("--die-after", type=int, default=0)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--max-concurrency", type=int, default=0)
    ap.add_argument("--api", choices=APIS, default="openai")
    ap.add_argument("--model", default="loopback")
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--no-usage", action="store_true")
    a = ap.parse_args(argv)
    # The key comes from the environment, never the command line (ps would show it).
    app = make_app(a.tokens, a.malformed_every, a.die_after, api_key=os.environ.get("LOOPBACK_API_KEY", ""),
                   chunk_delay_ms=a.chunk_delay_ms, ttft_ms=a.ttft_ms, max_concurrency=a.max_concurrency,
                   api=a.api, model=a.model, tokens_per_chunk=a.tokens_per_chunk, usage_counts=not a.no_usage)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False, backlog=4096)


def start(port: int = 0, tokens: int = 16, malformed_every: int = 0, die_after: int = 0, log_path=None,
          api_key: str = "", chunk_delay_ms: float = 0.0, ttft_ms: float = 0.0, max_concurrency: int = 0,
          api: str = "openai", model: str = "loopback", tokens_per_chunk: int = 1, usage: bool = True):
    """Start the server in its own process (own core, own GIL) and wait for it; returns (proc, base_url)."""
    import subprocess
    import sys

    import httpx

    from llmarch_lab import LabError

    port = port or free_port()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "llmarch_lab.llm.loopback", "--port", str(port),
                             "--tokens", str(tokens), "--malformed-every", str(malformed_every),
                             "--die-after", str(die_after), "--chunk-delay-ms", str(chunk_delay_ms),
                             "--ttft-ms", str(ttft_ms), "--max-concurrency", str(max_concurrency),
                             "--api", api, "--model", model, "--tokens-per-chunk", str(tokens_per_chunk),
                             *([] if usage else ["--no-usage"])],
                            stdout=out, stderr=subprocess.STDOUT,
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
