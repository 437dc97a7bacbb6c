"""The load generator: load profiles driving an OpenAI-compatible chat endpoint through the one
client, `llm.endpoint.Endpoint` (its aiohttp streaming call times every chunk).

    target = Endpoint(base_url, model, api_key_env="MY_KEY", extra_body={...}, timeout_s=60)
    records, wall_s = run_level(target, requests, profile="concurrent", level=8,
                                max_requests=64, max_seconds=60)

Profiles (every level bounded by a request count and a duration):
    synchronous   one request at a time
    concurrent    `level` requests in flight at all times (closed loop)
    constant      `level` requests per second, evenly spaced (open loop)
    poisson       `level` requests per second, exponential gaps (open loop, seeded)

Per request it records the time to first token, every inter-token gap, TPOT, end-to-end time,
prompt and output tokens (from the usage field when the engine sends it, else the lab's
tokenizer), and the error text. A request that errors or times out is recorded, never dropped;
an unparseable stream chunk is counted and skipped.

Streaming is aiohttp (Endpoint.astream_chat). httpx (+ httpx-sse) sustained 135 requests/s against
the loopback server where aiohttp sustained 456 on the same loaded machine; the openai client sits
on httpx and adds per-chunk object building. The client shares two cores with the engine, so its cost matters.

client="wire" (plain http:// only) measures closer to what the server did (benchmarks/serving_fidelity.py):
    - the socket client (llm/endpoint/wire.py): the clock starts as the request is written and
      stops at the kernel's receive time of each chunk, so the client's own event-loop lag is
      not in TTFT or ITL;
    - closed loop: the streams start WIRE_SPREAD_S apart, not in one instant. Against an engine
      whose answers all take as long (a fixed output length), streams that start together stay
      together, and every cycle the server takes their requests in as one burst: the last one
      waits for the others before the server's clock starts, a wait no client can see;
    - the garbage collector's existing objects are frozen for the level (gc.freeze), so a full
      collection of a large process (a lab with torch loaded: 200 ms) cannot stall the streams.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from llmarch_lab import LabError
from llmarch_lab.llm.endpoint import Endpoint

PROFILES = ("synchronous", "concurrent", "constant", "poisson")
CLIENTS = ("aiohttp", "wire")
WIRE_SPREAD_S = 0.002  # client="wire", closed loop: stream k starts k x this after the level's start (0.25 s at most)


# The load generator's target is the one OpenAI-compatible client (llm/endpoint/). Its third
# field is the NAME of the API key's environment variable (the key is read at request time).
Target = Endpoint


@dataclass
class Request:
    id: int
    messages: list
    max_tokens: int
    prompt_tokens: int = 0  # as counted by the lab's tokenizer (0 = unknown)


@dataclass
class Record:
    """One request's measurements; times in ms from the level's start (start_ms) or durations."""

    id: int
    level: float = 0.0
    start_ms: float = 0.0
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: list = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    chunks: int = 0
    malformed_chunks: int = 0
    usage_reported: bool = False
    reconnects: int = 0  # sent again on a new connection: the kept-alive one was closed (endpoint.py)
    error: str = ""
    text: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def row(self) -> dict:
        d = asdict(self)
        d["itl_ms"] = json.dumps([round(x, 2) for x in self.itl_ms])
        return d


def preflight(target: Endpoint, timeout_s: float = 5.0) -> list[str]:
    """GET /models: a clear one-line error within seconds for an unreachable or wrong URL or model."""
    return target.preflight(timeout_s)


async def stream_one(session, target: Endpoint, req: Request, t_level: float,
                     count_tokens: Callable[[str], int] | None = None) -> Record:
    """Send one streaming chat completion and time every chunk; errors become the record's `error`."""
    st = await target.astream_chat(req.messages, req.max_tokens, session=session)
    rec = Record(id=req.id, start_ms=(st.t0 - t_level) * 1000, ttft_ms=st.ttft_ms, e2e_ms=st.e2e_ms,
                 itl_ms=st.itl_ms, prompt_tokens=st.prompt_tokens or req.prompt_tokens, chunks=st.chunks,
                 malformed_chunks=st.malformed_chunks, reconnects=st.reconnects, error=st.error, text=st.text)
    if st.output_tokens is not None:
        rec.output_tokens, rec.usage_reported = st.output_tokens, True
    else:
        rec.output_tokens = count_tokens(rec.text) if (count_tokens and rec.text) else rec.chunks
    if not rec.error and rec.output_tokens > 1:
        rec.tpot_ms = (rec.e2e_ms - rec.ttft_ms) / (rec.output_tokens - 1)
    return rec


async def _run_level(target: Endpoint, requests: Iterator[Request], profile: str, level: float,
                     max_requests: int, max_seconds: float, seed: int,
                     count_tokens: Callable[[str], int] | None, progress, client: str = "aiohttp") -> list[Record]:
    records: list[Record] = []
    t_level = time.perf_counter()
    deadline = t_level + max_seconds

    async with target.session(limit=0, client=client) as session:  # no client-side cap: the profile sets concurrency
        async def one(req: Request):
            rec = await stream_one(session, target, req, t_level, count_tokens)
            rec.level = level
            records.append(rec)
            if progress is not None:
                progress.update(1)

        if profile in ("synchronous", "concurrent"):
            n_workers = 1 if profile == "synchronous" else int(level)
            spread = min(WIRE_SPREAD_S, 0.25 / n_workers) if client == "wire" else 0.0
            issued = 0

            async def worker(k: int):
                nonlocal issued
                if spread:
                    await asyncio.sleep(k * spread)
                while issued < max_requests and time.perf_counter() < deadline:
                    issued += 1
                    try:
                        req = next(requests)
                    except StopIteration:
                        return
                    await one(req)

            await asyncio.gather(*(worker(k) for k in range(n_workers)))
        else:
            rng = random.Random(seed)
            tasks, t_next = [], t_level
            for i in range(max_requests):
                if i:
                    t_next += (rng.expovariate(level) if profile == "poisson" else 1.0 / level)
                if t_next > deadline:
                    break
                delay = t_next - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    req = next(requests)
                except StopIteration:
                    break
                tasks.append(asyncio.create_task(one(req)))
            await asyncio.gather(*tasks)
    return records


def _loop_factory():
    """uvloop when installed (the `serving` extra has it, not on Windows): a cheaper event loop
    leaves more of the shared CPU to the engine."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(make_coro):
    """Run a coroutine to completion on a fresh loop; inside Jupyter (a loop already running in
    this thread) it runs on a fresh loop in a worker thread instead."""
    def go():
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(make_coro())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(go).result()


def run_level(target: Endpoint, requests: Iterator[Request], profile: str = "concurrent", level: float = 1,
              max_requests: int = 64, max_seconds: float = 60.0, seed: int = 0,
              count_tokens: Callable[[str], int] | None = None, progress=None,
              client: str = "aiohttp") -> tuple[list[Record], float]:
    """Drive one load level to its request or time bound; returns (records, wall seconds).
    client: "aiohttp" (any URL) or "wire" (plain http://; closer to the server's own timing,
    see the module docstring)."""
    if profile not in PROFILES:
        raise LabError(f"profile {profile!r}: use one of {', '.join(PROFILES)}")
    if level <= 0:
        raise LabError(f"load level {level}: must be > 0 (concurrency or requests/s)")
    if client not in CLIENTS:
        raise LabError(f"client {client!r}: use one of {', '.join(CLIENTS)}")
    if client == "wire":
        target.session(client="wire")  # a https:// URL fails here, before the level starts
        gc.freeze()
    t0 = time.perf_counter()
    try:
        recs = _run(lambda: _run_level(target, requests, profile, level, max_requests, max_seconds, seed,
                                       count_tokens, progress, client))
    finally:
        if client == "wire":
            gc.unfreeze()
    return sorted(recs, key=lambda r: r.id), time.perf_counter() - t0
