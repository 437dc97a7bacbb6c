"""What the guard produces: scores and entities, per-check results, a stage's Decision, the
GuardedReply of a whole call, and the EscalationQueue for human review."""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from llmarch_lab import LabError


@dataclass
class Entity:
    start: int
    end: int
    label: str
    score: float = 1.0


@dataclass
class Score:
    """What a scorer may return instead of a bare float."""

    score: float
    entities: list[Entity] = field(default_factory=list)
    redacted: str | None = None  # the scorer's own redaction of the text, if it makes one


@dataclass
class CheckResult:
    name: str
    stage: str
    score: float | None
    threshold: float
    action: str  # the configured action
    tripped: bool  # score >= threshold (or the scorer raised): the check's action applies
    latency_ms: float
    entities: list = field(default_factory=list)
    skipped: bool = False
    error: str = ""
    escalate_at: float | None = None
    escalated: bool = False  # score in [escalate_at, threshold): escalates instead of acting


@dataclass
class Decision:
    """The outcome of one stage: the action, the (possibly redacted) text, every check's result."""

    stage: str
    action: str
    text: str
    checks: list[CheckResult]
    latency_ms: float
    request_id: str = ""
    ts: str = ""

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def escalated(self) -> bool:
        return self.action == "escalate"

    @property
    def scores(self) -> dict:
        return {c.name: c.score for c in self.checks if not c.skipped}

    @property
    def tripped(self) -> list[str]:
        return [c.name for c in self.checks if c.tripped]

    @property
    def band(self) -> list[str]:
        """Checks whose score fell in their escalation band [escalate_at, threshold)."""
        return [c.name for c in self.checks if c.escalated]

    @property
    def flagged(self) -> list[str]:
        """Checks that tripped or escalated, in config order (what a reviewer is shown)."""
        return [c.name for c in self.checks if c.tripped or c.escalated]

    @property
    def redacts(self) -> bool:
        """A redact check tripped (its redaction applies also when another check escalates)."""
        return any(c.tripped and c.action == "redact" for c in self.checks)

    def to_record(self) -> dict:
        """A JSON-ready dict (the audit log's record body; audit.py redacts `text` before writing)."""
        return {"ts": self.ts, "request_id": self.request_id, "stage": self.stage, "action": self.action,
                "tripped": self.tripped, "escalated": self.band, "scores": self.scores, "latency_ms": round(self.latency_ms, 3),
                "checks": [{k: v for k, v in asdict(c).items() if k != "entities"} for c in self.checks],
                "text": self.text}

    @classmethod
    def from_record(cls, d: dict) -> "Decision":
        """The inverse of to_record, for decisions read back from JSON (the audit log, the guard service)."""
        checks = [CheckResult(**{**c, "entities": []}) for c in d.get("checks", [])]
        return cls(d["stage"], d["action"], d.get("text", ""), checks, float(d.get("latency_ms", 0.0)),
                   d.get("request_id", ""), d.get("ts", ""))


@dataclass
class GuardedReply:
    text: str
    action: str  # the overall outcome: allow | redact | block | escalate
    input: Decision
    output: Decision | None = None
    reply: Any = None  # the LLM's own reply object (None when the input stage stopped the call)
    request_id: str = ""

    @property
    def blocked(self) -> bool:
        return self.action == "block"


VERDICTS = ("allow", "block")


def utc_now() -> str:
    """ISO 8601 UTC with microseconds (2025-01-31T12:00:00.123456+00:00)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class EscalationQueue:
    """The human-review queue: one row per escalated decision (thread-safe). Each row has an `id`,
    `enqueued_at` (ISO 8601 UTC), the decision's checks, scores and text (after that stage's
    redactions, and through `redactor` when given), and a status: "pending" until a reviewer
    `resolve`s it with a verdict (allow | block), `reviewer` and `resolved_at`.

        q.pending()                                    # rows still waiting, oldest first
        q.resolve(row_id, "block", reviewer="ana")     # the row, resolved
        q.frame()                                      # every row as a DataFrame (COLUMNS)

    `path`: the queue is also kept as JSONL there (a row appended when queued; the file rewritten
    when a row is resolved), so another process (the gateway's launcher) can read it."""

    COLUMNS = ("id", "ts", "enqueued_at", "request_id", "stage", "checks", "scores", "text", "status",
               "verdict", "reviewer", "resolved_at")

    def __init__(self, path: str | Path | None = None, redactor: Callable[[str], str] | None = None):
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self.path = Path(path) if path else None
        self.redactor = redactor

    def put(self, d: Decision) -> dict:
        row = {"id": uuid.uuid4().hex[:12], "ts": d.ts, "enqueued_at": utc_now(), "request_id": d.request_id,
               "stage": d.stage, "checks": ",".join(d.flagged), "scores": dict(d.scores),
               "text": self.redactor(d.text) if self.redactor else d.text, "status": "pending",
               "verdict": "", "reviewer": "", "resolved_at": ""}
        with self._lock:
            self._rows.append(row)
            if self.path is not None:
                with open(self.path, "a") as f:
                    f.write(json.dumps(row) + "\n")
        return dict(row)

    def pending(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._rows if r["status"] == "pending"]

    def resolve(self, row_id: str, verdict: str, reviewer: str) -> dict:
        """Record a reviewer's verdict on a pending row; returns the resolved row."""
        if verdict not in VERDICTS:
            raise LabError(f"escalation {row_id}: verdict {verdict!r} must be one of {', '.join(VERDICTS)}")
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise LabError(f"escalation {row_id}: reviewer must name who decided")
        with self._lock:
            row = next((r for r in self._rows if r["id"] == row_id), None)
            if row is None:
                raise LabError(f"escalation {row_id!r}: no such row in the queue")
            if row["status"] != "pending":
                raise LabError(f"escalation {row_id}: already resolved ({row['verdict']} by {row['reviewer']} "
                               f"at {row['resolved_at']})")
            row.update(status="resolved", verdict=verdict, reviewer=reviewer.strip(), resolved_at=utc_now())
            if self.path is not None:
                tmp = self.path.with_suffix(self.path.suffix + ".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in self._rows))
                os.replace(tmp, self.path)
            return dict(row)

    @property
    def rows(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.COLUMNS))
