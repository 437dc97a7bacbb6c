"""The load generator: an async streaming client for any OpenAI-compatible chat endpoint, and the
load profiles that drive it.

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

Streaming is aiohttp. httpx (+ httpx-sse) sustained 135 requests/s against the loopback server
where aiohttp sustained 456 on the same loaded machine; the openai client sits on httpx and adds
per-chunk object building. The client shares two cores with the engine, so its cost matters.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from llmarch_lab import LabError

PROFILES = ("synchronous", "concurrent", "constant", "poisson")


@dataclass
class Target:
    """Where to send requests: an OpenAI-compatible base URL (ending in /v1) and a model name."""

    base_url: str
    model: str
    api_key: str = ""  # taken from an environment variable by the caller; never logged
    extra_body: dict = field(default_factory=dict)  # engine-specific fields (ignore_eos, logit_bias, ...)
    timeout_s: float = 60.0

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


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
    error: str = ""
    text: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def row(self) -> dict:
        d = asdict(self)
        d["itl_ms"] = json.dumps([round(x, 2) for x in self.itl_ms])
        return d


def preflight(target: Target, timeout_s: float = 5.0) -> list[str]:
    """GET /models: a clear one-line error within seconds for an unreachable or wrong URL or model."""
    import httpx

    url = target.base_url.rstrip("/") + "/models"
    try:
        r = httpx.get(url, headers=target.headers(), timeout=timeout_s)
    except httpx.HTTPError as e:
        raise LabError(f"serving target {target.base_url} unreachable: {type(e).__name__}: {e}") from None
    if r.status_code in (401, 403):
        raise LabError(f"serving target {target.base_url}: HTTP {r.status_code} (check the API key environment variable)")
    if r.status_code != 200:
        raise LabError(f"serving target {target.base_url}: GET /models gave HTTP {r.status_code}; "
                       "is this an OpenAI-compatible base URL ending in /v1?")
    try:
        names = [m["id"] for m in r.json().get("data", [])]
    except (ValueError, AttributeError, KeyError, TypeError):
        raise LabError(f"serving target {target.base_url}: /models is not an OpenAI model list") from None
    if names and target.model not in names:
        raise LabError(f"serving target {target.base_url} does not serve model {target.model!r}; it serves {names}")
    return names


async def stream_one(session, target: Target, req: Request, t_level: float,
                     count_tokens: Callable[[str], int] | None = None) -> Record:
    """Send one streaming chat completion and time every chunk; errors become the record's `error`."""
    import aiohttp

    rec = Record(id=req.id, prompt_tokens=req.prompt_tokens)
    body = {"model": target.model, "messages": req.messages, "max_tokens": req.max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0, **target.extra_body}
    t0 = time.perf_counter()
    rec.start_ms = (t0 - t_level) * 1000
    last = None
    parts: list[str] = []
    try:
        async with asyncio.timeout(target.timeout_s):
            async with session.post(target.base_url.rstrip("/") + "/chat/completions", json=body,
                                    headers=target.headers()) as resp:
                if resp.status != 200:
                    text = (await resp.read()).decode(errors="replace")
                    raise RuntimeError(f"HTTP {resp.status}: {text[:300]}")
                # SSE framing by hand: OpenAI-compatible engines send one `data:` line per event,
                # and this loop is the client's hot path (see the module docstring).
                async for raw in resp.content:
                    if not raw.startswith(b"data:"):
                        continue  # blank separators, comments, `event:` lines
                    data = raw[5:].strip()
                    if data == b"[DONE]":
                        break
                    now = time.perf_counter()
                    try:
                        chunk = json.loads(data)
                        if not isinstance(chunk, dict):
                            raise ValueError
                    except ValueError:
                        rec.malformed_chunks += 1
                        continue
                    if chunk.get("error"):
                        raise RuntimeError(f"engine error: {str(chunk['error'])[:300]}")
                    usage = chunk.get("usage")
                    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                        rec.output_tokens = int(usage["completion_tokens"])
                        rec.prompt_tokens = int(usage.get("prompt_tokens") or rec.prompt_tokens)
                        rec.usage_reported = True
                    try:
                        content = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                    except (AttributeError, IndexError, TypeError):
                        rec.malformed_chunks += 1
                        continue
                    if not content:
                        continue
                    rec.chunks += 1
                    parts.append(content)
                    if last is None:
                        rec.ttft_ms = (now - t0) * 1000
                    else:
                        rec.itl_ms.append((now - last) * 1000)
                    last = now
    except TimeoutError:
        rec.error = f"timeout after {target.timeout_s:g} s"
    except (aiohttp.ClientError, RuntimeError, OSError) as e:
        rec.error = (f"{type(e).__name__}: {e}"[:400]).rstrip(": ")
    end = time.perf_counter()
    rec.text = "".join(parts)
    if not rec.usage_reported:
        rec.output_tokens = count_tokens(rec.text) if (count_tokens and rec.text) else rec.chunks
    if not rec.error and rec.ttft_ms is None:
        rec.error = "no content in the stream"
    if not rec.error:
        rec.e2e_ms = (end - t0) * 1000
        if rec.output_tokens > 1:
            rec.tpot_ms = (rec.e2e_ms - rec.ttft_ms) / (rec.output_tokens - 1)
    return rec


async def _run_level(target: Target, requests: Iterator[Request], profile: str, level: float,
                     max_requests: int, max_seconds: float, seed: int,
                     count_tokens: Callable[[str], int] | None, progress) -> list[Record]:
    import aiohttp

    records: list[Record] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, target.timeout_s), sock_read=target.timeout_s)
    connector = aiohttp.TCPConnector(limit=0)  # no client-side cap: the profile sets concurrency
    t_level = time.perf_counter()
    deadline = t_level + max_seconds

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(req: Request):
            rec = await stream_one(session, target, req, t_level, count_tokens)
            rec.level = level
            records.append(rec)
            if progress is not None:
                progress.update(1)

        if profile in ("synchronous", "concurrent"):
            n_workers = 1 if profile == "synchronous" else int(level)
            issued = 0

            async def worker():
                nonlocal issued
                while issued < max_requests and time.perf_counter() < deadline:
                    issued += 1
                    try:
                        req = next(requests)
                    except StopIteration:
                        return
                    await one(req)

            await asyncio.gather(*(worker() for _ in range(n_workers)))
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


def run_level(target: Target, requests: Iterator[Request], profile: str = "concurrent", level: float = 1,
              max_requests: int = 64, max_seconds: float = 60.0, seed: int = 0,
              count_tokens: Callable[[str], int] | None = None, progress=None) -> tuple[list[Record], float]:
    """Drive one load level to its request or time bound; returns (records, wall seconds)."""
    if profile not in PROFILES:
        raise LabError(f"profile {profile!r}: use one of {', '.join(PROFILES)}")
    if level <= 0:
        raise LabError(f"load level {level}: must be > 0 (concurrency or requests/s)")
    t0 = time.perf_counter()
    recs = _run(lambda: _run_level(target, requests, profile, level, max_requests, max_seconds, seed,
                                   count_tokens, progress))
    return sorted(recs, key=lambda r: r.id), time.perf_counter() - t0
