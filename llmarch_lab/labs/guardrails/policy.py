"""The guard pipeline: input checks -> LLM -> output checks, each check with its own threshold and
action, all from one config.

    cfg = GuardConfig(checks=[
        CheckSpec(name="injection", stage="input", scorer="injection_heuristic", threshold=0.5, action="block"),
        CheckSpec(name="email", stage="input", scorer="regex", options={"patterns": [EMAIL]},
                  threshold=0.5, action="redact"),
        CheckSpec(name="profanity", stage="output", scorer="profanity", threshold=0.8, action="escalate"),
    ])
    guard = Guard(cfg)                                  # scorers resolved by name / "module:attr"
    guard = Guard(cfg, scorers={"email": my_fn})        # or given directly (a real detector object)
    d = guard.check_input("text")                       # Decision: action, text, per-check results
    r = guard.call(messages, endpoint, max_tokens=64)   # GuardedReply: input -> LLM -> output

A check is (name, stage, scorer, threshold, action). A scorer is any callable
`scorer(text) -> float | Score` (or `scorer(text, context)` to see the conversation, e.g. an
output check comparing against the prompt); `Score` adds entities (character spans) and an
optional redacted text. A detector that scores a batch (`score(texts) -> [0..1]`, the shape of
detectors.py / injection.py / toxicity.py) fits through `batch_scorer(obj.score)`; a Presidio
redactor (pii.py) fits as `redactors={"pii": fn}` or as a scorer returning `Score(redacted=...)`.

Tripped means score >= threshold. The decision's action is the most severe tripped action
(block > escalate > redact > allow). All enabled checks of a stage score the ORIGINAL text (so
scores do not depend on check order); redactions are then applied in config order. With
`stop_on_block` the remaining checks of a stage are skipped once one blocks (recorded as skipped).
A scorer that raises is recorded with its error and acts as `on_error` (fail closed: block).
Escalations go to an `EscalationQueue` (rows for an artifact table); `on_escalate="hold"` answers
with the hold message (nothing automatic reaches the user), `"pass"` lets the text through and
only queues it for review.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmarch_lab import LabError

Stage = Literal["input", "output"]
Action = Literal["allow", "redact", "block", "escalate"]
SEVERITY = {"allow": 0, "redact": 1, "escalate": 2, "block": 3}


# ------------------------------------------------------------------ config


class CheckSpec(BaseModel):
    """One check. `scorer`: a built-in name (see BUILTIN_SCORERS) or "module:attr" naming a
    factory called with `options` (or a plain scorer when options is empty and it is not a
    factory); "" = the scorer is passed to Guard(scorers={name: ...}) by the caller."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Unique check name (scores, audit, escalations use it).")
    stage: Stage = Field(description="input: before the LLM; output: on the LLM's answer.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Tripped when score >= threshold.")
    action: Action = Field("block", description="What a tripped check does.")
    scorer: str = Field("", description="Built-in scorer name or 'module:attr'; '' = given to Guard.")
    options: dict = Field(default_factory=dict, description="Keyword arguments for the scorer factory.")
    enabled: bool = Field(True, description="False: the check is skipped (kept in the config).")


class GuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[CheckSpec] = Field(default_factory=list, description="Checks, in the order they run.")
    # A conventional refusal, so that refusal detectors (garak's mitigation.MitigationBypass, say)
    # count a blocked answer as the refusal it is.
    block_message: str = Field("I'm sorry, but I can't help with that request.", description="Reply when blocked.")
    hold_message: str = Field("Your request has been passed to a human reviewer.",
                              description="Reply when escalated with on_escalate=hold.")
    on_escalate: Literal["hold", "pass"] = Field("hold", description="hold: reply hold_message; pass: answer, queue for review.")
    on_error: Action = Field("block", description="Action of a check whose scorer raised (fail closed).")
    stop_on_block: bool = Field(True, description="Skip a stage's remaining checks once one blocks.")
    redact_placeholder: str = Field("<{label}>", description="Replacement for an entity span ({label}).")

    @model_validator(mode="after")
    def _unique(self):
        names = [c.name for c in self.checks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"check names must be unique; repeated: {dup}")
        return self


# ------------------------------------------------------------------ scores and decisions


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


# ------------------------------------------------------------------ scorers


def batch_scorer(score_texts: Callable[[list[str]], Any]) -> Callable[[str], float]:
    """Adapt a batch detector `score(texts) -> sequence of floats in [0,1]` to one text."""
    def one(text: str) -> float:
        return float(list(score_texts([text]))[0])

    one.__name__ = getattr(score_texts, "__name__", "batch_scorer")
    return one


def regex_scorer(patterns: list[str], label: str = "MATCH", ignore_case: bool = True) -> Callable[[str], Score]:
    """1.0 when any pattern matches (0.0 otherwise); every match is an entity (for span redaction)."""
    flags = re.IGNORECASE if ignore_case else 0
    try:
        rx = [re.compile(p, flags) for p in patterns]
    except re.error as e:
        raise LabError(f"regex scorer: bad pattern: {e}") from None

    def score(text: str) -> Score:
        ents = [Entity(m.start(), m.end(), label) for r in rx for m in r.finditer(text) if m.end() > m.start()]
        return Score(1.0 if ents else 0.0, ents)

    return score


# A small lexical prompt-injection / jailbreak heuristic: the lab's own baseline, so the gateway
# and the garak scan run without any model. The learned detectors (injection.py) replace it
# through `scorer="module:attr"`. Each pattern that matches adds its weight; the score is capped at 1.
INJECTION_PATTERNS: tuple[tuple[str, float], ...] = (
    (r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|preceding|all|any|your)\b"
     r".{0,40}\b(instructions?|directions?|rules|prompts?|guidelines|context)\b", 1.0),
    (r"\b(stop everything|nevermind|never mind)\b", 0.6),
    (r"\bsystem prompt\b", 0.6),
    (r"\b(DAN|STAN|DUDE|AIM|jailbr(o|ea)k(en)?)\b", 0.6),
    (r"\bdo anything now\b", 1.0),
    (r"\bdeveloper mode\b", 1.0),
    (r"\b(pretend|act as if|roleplay as|you are now)\b.{0,60}\b(no|without|free of|any)\b.{0,30}"
     r"\b(restrictions?|filters?|limits?|rules|guidelines|censorship)\b", 1.0),
    (r"\b(no|without)\b.{0,20}\b(ethical|moral|content)\b.{0,20}\b(guidelines|restrictions|policy|policies|filters?)\b", 0.6),
    (r"\b(print|say|output|repeat|respond with)\b.{0,30}\b(exactly|verbatim|only)\b", 0.3),
    (r"\b(decode|decoded|base64|rot13|hex(adecimal)?|morse|uuencode|braille|ascii85|base32|base16)\b", 0.4),
    (r"\b[A-Za-z0-9+/]{24,}={0,2}", 0.4),  # a long base64-like run
    (r"<\|?(im_start|system|endoftext)\|?>|\[/?INST\]|###\s*(system|instruction)", 0.6),
    (r"\b(instead|new instructions?|from now on)\b", 0.3),
)


def injection_heuristic(extra_patterns: list | None = None) -> Callable[[str], Score]:
    """A weighted-regex injection score in [0,1] (see INJECTION_PATTERNS); matches are entities."""
    pats = [(re.compile(p, re.IGNORECASE | re.DOTALL), w) for p, w in INJECTION_PATTERNS]
    pats += [(re.compile(p, re.IGNORECASE | re.DOTALL), float(w)) for p, w in (extra_patterns or [])]

    def score(text: str) -> Score:
        total, ents = 0.0, []
        for rx, w in pats:
            m = rx.search(text)
            if m:
                total += w
                ents.append(Entity(m.start(), m.end(), "INJECTION", w))
        return Score(min(1.0, total), ents)

    return score


def profanity_scorer() -> Callable[[str], float]:
    """alt-profanity-check's probability (a linear SVM in its wheel; no hub model)."""
    from profanity_check import predict_prob

    def score(text: str) -> float:
        return float(predict_prob([text])[0])

    return score


def canary_scorer(canaries: list[str]) -> Callable[[str], Score]:
    """1.0 when the text contains a canary string (e.g. a secret planted in the system prompt)."""
    return regex_scorer([re.escape(c) for c in canaries], label="CANARY", ignore_case=False)


BUILTIN_SCORERS: dict[str, Callable[..., Callable]] = {
    "regex": regex_scorer,
    "injection_heuristic": injection_heuristic,
    "profanity": profanity_scorer,
    "canary": canary_scorer,
}


def resolve_scorer(spec: CheckSpec) -> Callable:
    """A built-in name -> factory(**options); "module:attr" -> attr(**options) when options are
    given or attr is a class, else attr itself (a plain scorer function)."""
    if spec.scorer in BUILTIN_SCORERS:
        try:
            return BUILTIN_SCORERS[spec.scorer](**spec.options)
        except TypeError as e:
            raise LabError(f"check {spec.name}: scorer {spec.scorer!r} options {spec.options}: {e}") from None
    mod, sep, attr = spec.scorer.partition(":")
    if not sep or not mod or not attr:
        raise LabError(f"check {spec.name}: scorer {spec.scorer!r} is neither a built-in "
                       f"({', '.join(BUILTIN_SCORERS)}) nor 'module:attr'")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise LabError(f"check {spec.name}: cannot import scorer {spec.scorer!r}: {e}") from None
    if spec.options or inspect.isclass(obj):
        obj = obj(**spec.options)
    if hasattr(obj, "score") and not callable(obj):
        obj = batch_scorer(obj.score)  # a detector object with score(texts)
    return obj


def _wants_context(fn: Callable) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


def _as_score(x) -> Score:
    if isinstance(x, Score):
        s = x
    elif isinstance(x, tuple):  # (score, entities) from a hand-written scorer
        s = Score(float(x[0]), list(x[1]) if len(x) > 1 else [])
    else:
        s = Score(float(x))
    if not (0.0 <= s.score <= 1.0) or s.score != s.score:
        raise ValueError(f"score {s.score!r} is outside [0, 1]")
    return s


def replace_spans(text: str, entities: list[Entity], placeholder: str = "<{label}>") -> str:
    """Replace entity spans (overlaps merged, the earliest label kept) with the placeholder."""
    spans = sorted((e.start, e.end, e.label) for e in entities if 0 <= e.start < e.end <= len(text))
    merged: list[list] = []
    for s, e, lab in spans:
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e, lab])
    out, pos = [], 0
    for s, e, lab in merged:
        out += [text[pos:s], placeholder.format(label=lab)]
        pos = e
    return "".join(out + [text[pos:]])


# ------------------------------------------------------------------ the guard


@dataclass
class _Check:
    spec: CheckSpec
    scorer: Callable
    wants_context: bool
    redactor: Callable[[str], str] | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def message_text(messages: list[dict], roles=("user",)) -> str:
    """The text the input stage checks: every message of `roles`, joined by blank lines (OpenAI
    content parts: their text parts). All user turns are checked, since a client can forge history."""
    out = []
    for m in messages:
        if m.get("role") not in roles:
            continue
        c = m.get("content")
        if isinstance(c, list):
            c = "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
        if c:
            out.append(str(c))
    return "\n\n".join(out)


class Guard:
    """The pipeline. `scorers` / `redactors` map check names to callables (they override the
    config's `scorer` strings); `redactor` is the default redaction for checks whose action is
    redact and whose scorer gives neither a redacted text nor entity spans. `audit` is anything
    with `append(record: dict)` (audit.AuditLog), `escalations` an EscalationQueue."""

    def __init__(self, config: GuardConfig | dict, scorers: dict | None = None, redactors: dict | None = None,
                 redactor: Callable[[str], str] | None = None, audit=None, escalations: EscalationQueue | None = None):
        self.config = config if isinstance(config, GuardConfig) else GuardConfig.model_validate(config)
        scorers, redactors = dict(scorers or {}), dict(redactors or {})
        unknown = sorted((set(scorers) | set(redactors)) - {c.name for c in self.config.checks})
        if unknown:
            raise LabError(f"guard: scorers/redactors given for checks not in the config: {unknown}")
        self.checks: list[_Check] = []
        for spec in self.config.checks:
            if not spec.enabled:
                continue
            fn = scorers.get(spec.name)
            if fn is None:
                if not spec.scorer:
                    raise LabError(f"check {spec.name}: no scorer (give CheckSpec.scorer or Guard(scorers={{...}}))")
                fn = resolve_scorer(spec)
            if not callable(fn):
                raise LabError(f"check {spec.name}: scorer {fn!r} is not callable")
            self.checks.append(_Check(spec, fn, _wants_context(fn), redactors.get(spec.name, redactor)))
        self.audit = audit
        self.escalations = escalations if escalations is not None else EscalationQueue()

    # -------------------------------------------------------------- stages

    def check_input(self, text: str, request_id: str = "", context: dict | None = None) -> Decision:
        return self._run("input", text, context, request_id)

    def check_output(self, text: str, context: dict | None = None, request_id: str = "") -> Decision:
        return self._run("output", text, context, request_id)

    def _run(self, stage: str, text: str, context: dict | None, request_id: str) -> Decision:
        t0 = time.perf_counter()
        results: list[CheckResult] = []
        scored: list[tuple[_Check, Score]] = []
        stop = False
        for ch in (c for c in self.checks if c.spec.stage == stage):
            sp = ch.spec
            if stop:
                results.append(CheckResult(sp.name, stage, None, sp.threshold, sp.action, False, 0.0, skipped=True))
                continue
            t = time.perf_counter()
            try:
                s = _as_score(ch.scorer(text, context) if ch.wants_context else ch.scorer(text))
                ms = (time.perf_counter() - t) * 1000
                tripped = s.score >= sp.threshold
                res = CheckResult(sp.name, stage, s.score, sp.threshold, sp.action, tripped, ms,
                                  [asdict(e) if isinstance(e, Entity) else e for e in s.entities])
                scored.append((ch, s))
            except Exception as e:  # a failing detector must not let the request through silently
                ms = (time.perf_counter() - t) * 1000
                res = CheckResult(sp.name, stage, None, sp.threshold, self.config.on_error, True, ms,
                                  error=f"{type(e).__name__}: {e}"[:300])
            results.append(res)
            if res.tripped and res.action == "block" and self.config.stop_on_block:
                stop = True
        action = max((r.action for r in results if r.tripped), key=SEVERITY.__getitem__, default="allow")
        out = text
        for ch, s in scored:  # redactions in config order, each on the text so far
            r = next(r for r in results if r.name == ch.spec.name)
            if r.tripped and r.action == "redact":
                out = self._redact(ch, s, text, out)
        d = Decision(stage, action, out, results, (time.perf_counter() - t0) * 1000,
                     request_id or uuid.uuid4().hex, _now())
        if d.escalated:
            self.escalations.put(d)
        if self.audit is not None:
            self.audit.append(d.to_record())
        return d

    def _redact(self, ch: _Check, s: Score, original: str, current: str) -> str:
        if ch.redactor is not None:
            return ch.redactor(current)
        if s.redacted is not None and current == original:
            return s.redacted
        if s.entities:
            if current == original:
                return replace_spans(current, [e if isinstance(e, Entity) else Entity(**e) for e in s.entities],
                                     self.config.redact_placeholder)
            # an earlier redaction moved the offsets: re-score the current text for fresh spans
            again = _as_score(ch.scorer(current, None) if ch.wants_context else ch.scorer(current))
            return replace_spans(current, again.entities, self.config.redact_placeholder)
        raise LabError(f"check {ch.spec.name}: action redact, but its scorer gives no spans or redacted "
                       "text and no redactor was given (Guard(redactor=...) or redactors={name: fn})")

    # -------------------------------------------------------------- the whole call

    def reply_for(self, d: Decision) -> str | None:
        """The canned reply a stopping decision gets (None: the decision lets the text through)."""
        if d.blocked:
            return self.config.block_message
        if d.escalated and self.config.on_escalate == "hold":
            return self.config.hold_message
        return None

    def call(self, messages: list[dict] | str, llm, max_tokens: int = 128, request_id: str = "", **kw) -> GuardedReply:
        """Input checks on the user turns -> llm.chat (redacted messages) -> output checks."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        rid = request_id or uuid.uuid4().hex
        din = self.check_input(message_text(messages), request_id=rid)
        canned = self.reply_for(din)
        if canned is not None:
            return GuardedReply(canned, din.action, din, None, None, rid)
        send = self.redact_messages(messages) if din.action == "redact" else messages
        reply = llm.chat(send, max_tokens, **kw)
        dout = self.check_output(reply.text, context={"messages": send, "input": din}, request_id=rid)
        canned = self.reply_for(dout)
        action = max(din.action, dout.action, key=SEVERITY.__getitem__)
        return GuardedReply(canned if canned is not None else dout.text, action, din, dout, reply, rid)

    def redact_messages(self, messages: list[dict]) -> list[dict]:
        """The messages with each user turn passed through the input stage's redactions."""
        out = []
        for m in messages:
            c = m.get("content")
            if m.get("role") == "user" and isinstance(c, str) and c:
                m = {**m, "content": self._redact_only("input", c)}
            out.append(m)
        return out

    def _redact_only(self, stage: str, text: str) -> str:
        out = text
        for ch in (c for c in self.checks if c.spec.stage == stage and c.spec.action == "redact"):
            s = _as_score(ch.scorer(out, None) if ch.wants_context else ch.scorer(out))
            if s.score >= ch.spec.threshold:
                out = self._redact(ch, s, out, out)
        return out
