"""The streamed chat answer: its SSE events read, parsed and timed into a Stream."""

from __future__ import annotations

import json
import time

from llmarch_lab.llm.endpoint.answers import Stream, int_or_none


class Events:
    """The `data:` lines of one streamed answer, timed into a Stream and its text parts. Shared
    by both streaming clients: aiohttp's (read_sse, timed when the event loop reads a line) and
    the socket client's (wire.py, timed by the kernel's receive timestamp)."""

    def __init__(self, st: Stream, parts: list):
        self.st, self.parts, self.last = st, parts, None

    def line(self, raw: bytes, now: float) -> bool:
        """One line of the stream, received at `now` (perf_counter seconds); True at `[DONE]`."""
        if not raw.startswith(b"data:"):
            return False  # blank separators, comments, `event:` lines
        data = raw[5:].strip()
        if data == b"[DONE]":
            return True
        st = self.st
        try:
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise ValueError
        except ValueError:
            st.malformed_chunks += 1
            return False
        if chunk.get("error"):
            raise RuntimeError(f"engine error: {str(chunk['error'])[:300]}")
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            st.output_tokens = int(usage["completion_tokens"])
            st.prompt_tokens = int_or_none(usage.get("prompt_tokens"))
        try:
            content = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
        except (AttributeError, IndexError, TypeError):
            st.malformed_chunks += 1
            return False
        if not content:
            return False
        st.chunks += 1
        self.parts.append(content)
        if self.last is None:
            st.ttft_ms = (now - st.t0) * 1000
        else:
            st.itl_ms.append((now - self.last) * 1000)
        self.last = now
        return False


async def read_sse(resp, st: Stream, parts: list) -> None:
    """SSE framing by hand: OpenAI-compatible engines send one `data:` line per event, and this
    loop is the load generator's hot path (see the llm.endpoint package docstring)."""
    events = Events(st, parts)
    async for raw in resp.content:
        if raw.startswith(b"data:") and events.line(raw, time.perf_counter()):
            break
