"""Sending the trace: one chat request (timed, its outcome read from the response), and the guard
decisions each request left in the gateway's audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path

from llmarch_lab import LabError

OUTCOMES = ("answer", "block", "hold", "error")


def outcome(status: int, body, block_message: str, hold_message: str) -> tuple[str, str, str]:
    """(outcome, finish_reason, content) of a chat response: `block` (HTTP 400 content_filter, or
    finish_reason content_filter with any text but the hold message), `hold` (the hold message),
    `answer`, or `error` (any other status)."""
    if status == 400 and "content_filter" in json.dumps(body):
        return "block", "content_filter", ""
    if status != 200:
        return "error", "", json.dumps(body)[:300]
    try:
        ch = body["choices"][0]
        finish, content = ch.get("finish_reason") or "", (ch.get("message") or {}).get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return "error", "", json.dumps(body)[:300]
    if content.strip() == hold_message.strip():
        return "hold", finish, content
    if finish == "content_filter" or content.strip() == block_message.strip():
        return "block", finish, content
    return "answer", finish, content


def ask(client, base_url: str, model: str, text: str, max_tokens: int) -> dict:
    """One non-streaming chat request (temperature 0): status, e2e ms and the parsed body."""
    t0 = time.perf_counter()
    r = client.post(base_url.rstrip("/") + "/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": text}],
                          "max_tokens": max_tokens, "temperature": 0.0})
    ms = (time.perf_counter() - t0) * 1000
    try:
        body = r.json()
    except ValueError:
        body = {"raw": r.text[:300]}
    return {"status": r.status_code, "ms": ms, "body": body}


class AuditTail:
    """The records appended to an audit log since the last call (complete lines only): with one
    request at a time, the decisions of the request just answered."""

    def __init__(self, path):
        self.path = Path(path)
        self.pos = 0

    def new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.pos += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise LabError(f"{self.path}: a line that is not JSON after byte {self.pos - end}") from None
        return out


def decisions(records: list[dict]) -> dict:
    """One request's audit records -> input / output action, what tripped or escalated, guard ms."""
    din = next((r for r in records if r.get("stage") == "input"), None)
    outs = [r for r in records if r.get("stage") == "output"]
    return {"input_action": din["action"] if din else "", "output_action": outs[-1]["action"] if outs else "",
            "tripped": ",".join(sorted({t for r in records for t in r.get("tripped", [])})),
            "band": ",".join(sorted({t for r in records for t in r.get("escalated", [])})),
            "guard_ms": float(sum(r.get("latency_ms", 0.0) for r in records)), "decisions": len(records)}
