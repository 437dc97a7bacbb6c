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

Tripped means score >= threshold. With `escalate_at`, a score in [escalate_at, threshold)
escalates (Decision.band) instead, and redactions still apply; the EscalationQueue's rows carry
ids and timestamps, and `pending()` / `resolve(id, verdict, reviewer)` are the review API. The decision's action is the most severe tripped action
(block > escalate > redact > allow). All enabled checks of a stage score the ORIGINAL text (so
scores do not depend on check order); redactions are then applied in config order. With
`stop_on_block` the remaining checks of a stage are skipped once one blocks (recorded as skipped).
A scorer that raises is recorded with its error and acts as `on_error` (fail closed: block).
Escalations go to an `EscalationQueue` (rows for an artifact table); `on_escalate="hold"` answers
with the hold message (nothing automatic reaches the user), `"pass"` lets the text through and
only queues it for review.

One module a job (each importing only those before it): config.py (CheckSpec, GuardConfig),
decisions.py (Score, Entity, CheckResult, Decision, GuardedReply, EscalationQueue), scorers.py
(the built-in scorers, resolve_scorer), guard.py (Guard, message_text, replace_spans). This
package re-exports their public names.
"""

from llmarch_lab.labs.guardrails.policy.config import SEVERITY, Action, CheckSpec, GuardConfig, Stage
from llmarch_lab.labs.guardrails.policy.decisions import (
    CheckResult,
    Decision,
    Entity,
    EscalationQueue,
    GuardedReply,
    Score,
)
from llmarch_lab.labs.guardrails.policy.guard import Guard, message_text, replace_spans
from llmarch_lab.labs.guardrails.policy.scorers import (
    BUILTIN_SCORERS,
    INJECTION_PATTERNS,
    batch_scorer,
    canary_scorer,
    injection_heuristic,
    profanity_scorer,
    regex_scorer,
    resolve_scorer,
)

__all__ = [
    "SEVERITY", "Action", "CheckSpec", "GuardConfig", "Stage",
    "CheckResult", "Decision", "Entity", "EscalationQueue", "GuardedReply", "Score",
    "Guard", "message_text", "replace_spans",
    "BUILTIN_SCORERS", "INJECTION_PATTERNS", "batch_scorer", "canary_scorer", "injection_heuristic",
    "profanity_scorer", "regex_scorer", "resolve_scorer",
]
