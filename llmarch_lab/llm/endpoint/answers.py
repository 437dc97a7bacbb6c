"""What the endpoint's calls return: a chat reply, a timed stream, completion log-probs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reply:
    """A non-streaming chat completion. Token counts are the server's usage (None: not reported)."""

    text: str
    output_tokens: int | None
    prompt_tokens: int | None
    seconds: float
    finish_reason: str | None = None


@dataclass
class Stream:
    """A streamed chat completion, timed chunk by chunk (perf_counter clock; durations in ms)."""

    t0: float = 0.0  # perf_counter() when the request was sent (aiohttp: before it is built; wire.py: as it is written)
    text: str = ""
    chunks: int = 0  # chunks that carried content
    malformed_chunks: int = 0  # unparseable chunks, counted and skipped
    ttft_ms: float | None = None
    itl_ms: list = field(default_factory=list)  # gaps between content chunks
    e2e_ms: float | None = None
    prompt_tokens: int | None = None  # from the usage chunk, when the server sends one
    output_tokens: int | None = None
    error: str = ""
    reconnects: int = 0  # stale kept-alive connections replaced before any answer (sent again)


@dataclass
class Logprobs:
    """A /completions answer with log-probs, in the OpenAI completions format (one entry per
    generated token; top_logprobs maps token text -> log-prob for the top N at that position)."""

    text: str
    tokens: list
    token_logprobs: list
    top_logprobs: list


def int_or_none(x) -> int | None:
    try:
        return None if x is None else int(x)
    except (TypeError, ValueError):
        return None
