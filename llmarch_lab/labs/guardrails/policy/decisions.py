"""What the guard produces: scores and entities, per-check results, a stage's Decision, the
GuardedReply of a whole call, and the EscalationQueue for human review."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


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
    tripped: bool
    latency_ms: float
    entities: list = field(default_factory=list)
    skipped: bool = False
    error: str = ""


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

    def to_record(self) -> dict:
        """A JSON-ready dict (the audit log's record body; audit.py redacts `text` before writing)."""
        return {"ts": self.ts, "request_id": self.request_id, "stage": self.stage, "action": self.action,
                "tripped": self.tripped, "scores": self.scores, "latency_ms": round(self.latency_ms, 3),
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


class EscalationQueue:
    """The human-review queue: one row per escalated decision (thread-safe); `frame()` is the
    artifact table. It holds the decision's text, i.e. after any redaction of that stage."""

    COLUMNS = ("ts", "request_id", "stage", "checks", "scores", "text", "status")

    def __init__(self):
        self._rows: list[dict] = []
        self._lock = threading.Lock()

    def put(self, d: Decision) -> None:
        row = {"ts": d.ts, "request_id": d.request_id, "stage": d.stage, "checks": ",".join(d.tripped),
               "scores": {n: s for n, s in d.scores.items()}, "text": d.text, "status": "pending"}
        with self._lock:
            self._rows.append(row)

    @property
    def rows(self) -> list[dict]:
        with self._lock:
            return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.COLUMNS))
