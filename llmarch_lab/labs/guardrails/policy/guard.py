"""The Guard: runs a stage's checks on a text (scores, the decision, redactions, audit and
escalation), and the whole call input -> LLM -> output."""

from __future__ import annotations

import inspect
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.policy.config import SEVERITY, CheckSpec, GuardConfig
from llmarch_lab.labs.guardrails.policy.decisions import (
    CheckResult,
    Decision,
    Entity,
    EscalationQueue,
    GuardedReply,
    Score,
    utc_now,
)
from llmarch_lab.labs.guardrails.policy.scorers import resolve_scorer


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


@dataclass
class _Check:
    spec: CheckSpec
    scorer: Callable
    wants_context: bool
    redactor: Callable[[str], str] | None


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
                results.append(CheckResult(sp.name, stage, None, sp.threshold, sp.action, False, 0.0, skipped=True,
                                           escalate_at=sp.escalate_at))
                continue
            t = time.perf_counter()
            try:
                s = _as_score(ch.scorer(text, context) if ch.wants_context else ch.scorer(text))
                ms = (time.perf_counter() - t) * 1000
                tripped = s.score >= sp.threshold
                band = not tripped and sp.escalate_at is not None and s.score >= sp.escalate_at
                res = CheckResult(sp.name, stage, s.score, sp.threshold, sp.action, tripped, ms,
                                  [asdict(e) if isinstance(e, Entity) else e for e in s.entities],
                                  escalate_at=sp.escalate_at, escalated=band)
                scored.append((ch, s))
            except Exception as e:  # a failing detector must not let the request through silently
                ms = (time.perf_counter() - t) * 1000
                res = CheckResult(sp.name, stage, None, sp.threshold, self.config.on_error, True, ms,
                                  error=f"{type(e).__name__}: {e}"[:300], escalate_at=sp.escalate_at)
            results.append(res)
            if res.tripped and res.action == "block" and self.config.stop_on_block:
                stop = True
        # a tripped check takes its action; a check in its escalation band escalates
        acts = [r.action for r in results if r.tripped] + ["escalate" for r in results if r.escalated]
        action = max(acts, key=SEVERITY.__getitem__, default="allow")
        out = text
        for ch, s in scored:  # redactions in config order, each on the text so far
            r = next(r for r in results if r.name == ch.spec.name)
            if r.tripped and r.action == "redact":
                out = self._redact(ch, s, text, out)
        d = Decision(stage, action, out, results, (time.perf_counter() - t0) * 1000,
                     request_id or uuid.uuid4().hex, utc_now())
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
        send = self.redact_messages(messages) if din.redacts else messages  # also when escalated and passed
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
