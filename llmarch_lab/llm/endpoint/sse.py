"""The streamed chat answer: its SSE events read, parsed and timed into a Stream."""

from __future__ import annotations

import json
import time

from llmarch_lab.llm.endpoint.answers import Stream, int_or_none


async def read_sse(resp, st: Stream, parts: list) -> None:
    """SSE framing by hand: OpenAI-compatible engines send one `data:` line per event, and this
    loop is the load generator's hot path (see the llm.endpoint package docstring)."""
    last = None
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
            st.malformed_chunks += 1
            continue
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
            continue
        if not content:
            continue
        st.chunks += 1
        parts.append(content)
        if last is None:
            st.ttft_ms = (now - st.t0) * 1000
        else:
            st.itl_ms.append((now - last) * 1000)
        last = now
