"""The HTTP side of the engine adapters: an OpenAI-compatible chat server over a backend that
owns the engine's scheduler (openvino_backend.py, ct2_backend.py).

    python -m llmarch_lab.llm.adapters.openai_http --backend openvino --model M.gguf \\
        --name smollm2-135m-instruct --port 8000 --threads 2 --max-num-seqs 8

Routes: POST /v1/chat/completions (`stream` true or false; `stream_options.include_usage`;
`max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `seed`, `ignore_eos` as vLLM and
llama-server take them), GET /v1/models, GET /health (200 once the model is loaded; the port
opens only then), GET /metrics (Prometheus text: requests running and waiting, KV-cache usage
where the engine reports it, prompt and generated token counters, TTFT and end-to-end
histograms). Bad requests get a 400 (404 for another model name) with an OpenAI-style error
body naming the field; a request longer than the context gets vLLM's wording.

Threads: aiohttp's event loop parses and streams; the backend's one engine thread runs the
engine (step() or generate_batch()) and calls `Stream.emit` with new token ids. Detokenization
happens there too, so the engine's tokenizer is only ever used from one thread; the text is
handed to the event loop with call_soon_threadsafe. A client that goes away cancels its request.

Runs in the engine's own environment: standard library, aiohttp and prometheus-client only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass
class GenParams:
    """What a backend needs of one request."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False


@dataclass
class Stream:
    """One request in flight: the engine thread calls emit(); the event loop reads `queue`."""

    rid: int
    prompt_tokens: int
    decode: object  # callable(list[int]) -> str (the backend's tokenizer)
    loop: asyncio.AbstractEventLoop
    metrics: "Metrics"
    t_arrival: float = field(default_factory=time.perf_counter)
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ids: list = field(default_factory=list)
    text: str = ""
    done: bool = False
    unsent: int = 0  # tokens generated since the last hand-over (a token may add no text yet)

    def emit(self, new_ids: list[int], finish: str | None = None) -> None:
        """From the engine thread: new token ids, and the finish reason once it is done."""
        if self.done:
            return
        if new_ids:
            if not self.ids:
                self.metrics.ttft.observe(time.perf_counter() - self.t_arrival)
            self.ids += list(new_ids)
            self.metrics.generated.inc(len(new_ids))
        delta = ""
        full = self.decode(self.ids) if self.ids else ""
        # A token that ends inside a multi-byte character decodes to U+FFFD: hold it back until
        # the next token completes the character (or the stream ends).
        if finish or not full.endswith("\ufffd"):
            delta, self.text = full[len(self.text):], full
        if finish:
            self.done = True
            self.metrics.e2e.observe(time.perf_counter() - self.t_arrival)
            self.metrics.finished.inc()
        self.unsent += len(new_ids)
        if delta or finish:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (delta, self.unsent, finish))
            self.unsent = 0


class Metrics:
    def __init__(self, prefix: str, gauges):
        self.registry = r = CollectorRegistry()
        self.prompt = Counter(f"{prefix}:prompt_tokens", "Prompt tokens received", registry=r)
        self.generated = Counter(f"{prefix}:generation_tokens", "Tokens generated", registry=r)
        self.finished = Counter(f"{prefix}:request_success", "Requests finished", registry=r)
        buckets = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120)
        self.ttft = Histogram(f"{prefix}:time_to_first_token_seconds", "Arrival to first token", registry=r,
                              buckets=buckets)
        self.e2e = Histogram(f"{prefix}:e2e_request_latency_seconds", "Arrival to last token", registry=r,
                             buckets=buckets)
        for key, doc in (("num_requests_running", "Requests being generated"),
                         ("num_requests_waiting", "Requests waiting for the engine"),
                         ("kv_cache_usage_perc", "KV-cache blocks in use, 0..1")):
            g = Gauge(f"{prefix}:{key}", doc, registry=r)
            g.set_function(lambda k=key: float(gauges().get(k, 0.0)))


def _field(body: dict, name: str, kind, lo, hi, default):
    v = body.get(name, default)
    if v is None:
        return default
    ok = isinstance(v, kind) and not isinstance(v, bool) and lo <= v <= hi
    if not ok:
        raise BadRequest(f"{name}: expected a number in {lo}..{hi}, got {v!r}", param=name)
    return v


def parse_chat(body, served: str, max_model_len: int) -> tuple[list[dict], int | None, GenParams, bool, bool]:
    """(messages, max_tokens or None, params, stream, include_usage) of a chat request, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model", served)
    if model != served:
        raise BadRequest(f"The model `{model}` does not exist.", status=404, param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: expected a non-empty list", param="messages")
    out = []
    for i, m in enumerate(msgs):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(content, str):
            raise BadRequest(f"messages.{i}: expected {{role: str, content: str}}", param="messages")
        out.append({"role": m["role"], "content": content})
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = None if mt is None else _field({"max_tokens": mt}, "max_tokens", int, 1, max_model_len, None)
    params = GenParams(max_tokens=max_tokens or 0,
                       temperature=float(_field(body, "temperature", (int, float), 0, 2, 1.0)),
                       top_p=float(_field(body, "top_p", (int, float), 0, 1, 1.0)),
                       seed=_field(body, "seed", int, 0, 2**63 - 1, None),
                       ignore_eos=bool(body.get("ignore_eos", False)))
    opts = body.get("stream_options") or {}
    return out, max_tokens, params, bool(body.get("stream", False)), bool(opts.get("include_usage", False))


def _error(e: BadRequest) -> web.Response:
    kind = {404: "NotFoundError", 503: "ServiceUnavailableError"}.get(e.status, "BadRequestError")
    return web.json_response({"error": {"message": str(e), "type": kind, "param": e.param, "code": e.status}},
                             status=e.status)


class Server:
    def __init__(self, backend, name: str, max_model_len: int):
        self.backend, self.name, self.max_model_len = backend, name, max_model_len
        self.metrics = Metrics(backend.prefix, backend.gauges)
        self._next = 0
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 2**20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prom)
        return app

    async def models(self, _req):
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model",
                                                              "owned_by": self.backend.prefix,
                                                              "max_model_len": self.max_model_len}]})

    async def health(self, _req):
        err = self.backend.error()
        return web.json_response({"status": "error", "error": err} if err else {"status": "ok"},
                                 status=503 if err else 200)

    async def prom(self, _req):
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    def _start(self, body) -> tuple[Stream, bool, bool]:
        msgs, max_tokens, params, stream, usage = parse_chat(body, self.name, self.max_model_len)
        if self.backend.error():  # the engine thread died: say so at once rather than queue forever
            raise BadRequest(f"the engine failed: {self.backend.error()}", status=503)
        ids = self.backend.chat_prompt(msgs)
        room = self.max_model_len - len(ids)
        if room < (max_tokens or 1):
            raise BadRequest(f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                             f"requested {len(ids) + (max_tokens or 1)} tokens ({len(ids)} in the messages, "
                             f"{max_tokens or 1} in the completion).", param="max_tokens")
        params.max_tokens = max_tokens or room
        with self._lock:
            self._next += 1
            rid = self._next
        st = Stream(rid, len(ids), self.backend.decode, asyncio.get_running_loop(), self.metrics)
        self.metrics.prompt.inc(len(ids))
        self.backend.submit(rid, ids, params, st.emit)
        return st, stream, usage

    async def chat(self, req: web.Request):
        try:
            try:
                body = await req.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BadRequest("the request body is not valid JSON") from None
            st, stream, usage = self._start(body)
        except BadRequest as e:
            return _error(e)
        try:
            return await (self._stream(req, st, usage) if stream else self._whole(st))
        finally:
            if not st.done:  # the client went away (or the handler failed): free the engine's slot
                self.backend.cancel(st.rid)

    def _chunk(self, st: Stream, delta: dict, finish=None, usage=None) -> bytes:
        d = {"id": f"chatcmpl-{st.rid}", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": self.name, "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            d["usage"] = usage
        return b"data: " + json.dumps(d).encode() + b"\n\n"

    async def _stream(self, req, st: Stream, include_usage: bool):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(req)
        first, n = True, 0
        while True:
            delta, k, finish = await st.queue.get()
            n += k
            if delta:
                d = {"role": "assistant", "content": delta} if first else {"content": delta}
                first = False
                await resp.write(self._chunk(st, d))
            if finish:
                if finish == "error":
                    await resp.write(b'data: {"error": {"message": "the engine failed", "code": 500}}\n\n')
                    break
                await resp.write(self._chunk(st, {}, finish))
                if include_usage:
                    await resp.write(self._chunk(st, {}, usage=self._usage(st, n)))
                break
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _whole(self, st: Stream):
        n, finish = 0, None
        while not finish:
            _, k, finish = await st.queue.get()
            n += k
        if finish == "error":
            return web.json_response({"error": {"message": "the engine failed", "code": 500}}, status=500)
        return web.json_response({"id": f"chatcmpl-{st.rid}", "object": "chat.completion", "created": int(time.time()),
                                  "model": self.name, "usage": self._usage(st, n),
                                  "choices": [{"index": 0, "finish_reason": finish,
                                               "message": {"role": "assistant", "content": st.text}}]})

    @staticmethod
    def _usage(st: Stream, n: int) -> dict:
        return {"prompt_tokens": st.prompt_tokens, "completion_tokens": n, "total_tokens": st.prompt_tokens + n}


def make_backend(a: argparse.Namespace):
    if a.backend == "openvino":
        from llmarch_lab.llm.adapters.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(a.model, threads=a.threads, max_num_seqs=a.max_num_seqs,
                               max_batched_tokens=a.max_batched_tokens, cache_gb=a.cache_gb,
                               kv_precision=a.precision, max_model_len=a.max_model_len)
    from llmarch_lab.llm.adapters.ct2_backend import CT2Backend

    return CT2Backend(a.model, threads=a.threads, max_batch_size=a.max_num_seqs, compute_type=a.precision)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("openvino", "ctranslate2"), required=True)
    ap.add_argument("--model", required=True, help="openvino: a .gguf file or an OpenVINO IR folder; "
                    "ctranslate2: a converted model folder (with its tokenizer files)")
    ap.add_argument("--name", required=True, help="the served model name")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--max-num-seqs", type=int, default=8, help="sequences batched together at most")
    ap.add_argument("--max-batched-tokens", type=int, default=256, help="openvino: tokens per step (chunked prefill)")
    ap.add_argument("--cache-gb", type=float, default=1.0, help="openvino: KV-cache size")
    ap.add_argument("--precision", default="", help="openvino: KV-cache precision (u8, f16, f32; '' = the "
                    "plugin's default); ctranslate2: compute type (int8, int8_float32, float32, ...; '' = int8)")
    a = ap.parse_args(argv)
    backend = make_backend(a)
    server = Server(backend, a.name, a.max_model_len)
    print(f"{a.backend} adapter: serving {a.name} on http://{a.host}:{a.port}/v1", flush=True)
    try:
        web.run_app(server.app(), host=a.host, port=a.port, print=None, access_log=None)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
