"""The lab's guard stack: the real detectors as policy checks, one config for the notebook, the
benchmark and the gateway.

    cfg = stack.default_config()             # GuardConfig: scorers named "module:attr" (below)
    guard = policy.Guard(cfg)                 # loads the detectors once
    guard.call(messages, endpoint)            # input checks -> LLM -> output checks

Input: prompt injection (a detector from injection.py, block), PII (Presidio via pii.py, redact),
toxicity (alt-profanity-check, block). Output: PII (redact), toxicity (block) and business rules
(rules/: banned topics, forbidden phrases, a length cap; block). The gateway process builds the
same Guard from the same JSON, because every scorer here is a factory named by a string (always
with options: policy.resolve_scorer calls a "module:attr" with options, and uses it as the
scorer itself without).
"""

from __future__ import annotations

import functools
from typing import Any

from llmarch_lab.labs.guardrails import policy

M = "llmarch_lab.labs.guardrails.stack"


@functools.lru_cache(maxsize=None)
def _injection(detector: str):
    from llmarch_lab.labs.guardrails import injection

    det = injection.build(detector)
    det.warmup()
    return det


def injection_scorer(detector: str = "minilm-lr"):
    """text -> the detector's score; the check's threshold defaults to the detector's own
    (chosen by cross-validation on the training file)."""
    det = _injection(detector)
    return lambda text: float(det.score([text])[0])


def injection_threshold(detector: str = "minilm-lr") -> float:
    return float(_injection(detector).threshold)


def pii_scorer(config: str = "spacy/tuned"):
    """text -> Score(max entity score, entity spans, the <TYPE>-redacted text)."""
    from llmarch_lab.labs.guardrails import pii

    cfg = pii.configs()[config]
    pii.analyzer(cfg)  # load spaCy now, not on the first request

    def score(text: str) -> policy.Score:
        # One Presidio analysis per text; the guard replaces the spans with <TYPE> (policy.replace_spans
        # merges overlaps the way Presidio's replace operator does).
        ents = pii.detect(text, cfg)
        return policy.Score(max((e["score"] for e in ents), default=0.0),
                            [policy.Entity(e["start"], e["end"], e["entity_type"], e["score"]) for e in ents])

    return score


def toxicity_scorer(detector: str = "profanity-check"):
    from llmarch_lab.labs.guardrails import toxicity

    det = toxicity.build(detector)
    det.warmup()
    return lambda text: float(det.score([text])[0])


DEFAULT_RULES: dict[str, Any] = {
    # A customer-support assistant's house rules (an example an architect replaces with theirs).
    "banned_topics": {"medical_dosage": ["dosage", "mg per kg", "overdose"],
                      "legal_advice": ["legal advice", "sue them", "file a lawsuit"]},
    "forbidden_phrases": ["as an AI language model", "I guarantee", "100% safe"],
    "max_chars": 4000,
}


def rules_scorer(banned_topics: dict | None = None, forbidden_phrases: list | None = None, max_chars: int = 4000):
    """text -> 1.0 when any business rule fails (banned topic, forbidden phrase, too long), else 0.0."""
    from llmarch_lab.labs.guardrails import rules

    checks = rules.banned_topics(banned_topics if banned_topics is not None else DEFAULT_RULES["banned_topics"])
    checks.append(rules.ForbiddenPhrases(forbidden_phrases if forbidden_phrases is not None
                                         else DEFAULT_RULES["forbidden_phrases"]))
    checks.append(rules.MaxChars(max_chars))
    rs = rules.RuleSet(checks)
    return lambda text: 0.0 if rs.check(text).passed else 1.0


def default_config(injection_detector: str = "minilm-lr", pii_config: str = "spacy/tuned",
                   injection_threshold_: float | None = None, toxicity_threshold: float = 0.8,
                   output_pii: bool = True) -> policy.GuardConfig:
    """The lab's stack as a GuardConfig (JSON-able: the gateway's guard service loads it too)."""
    thr = injection_threshold(injection_detector) if injection_threshold_ is None else injection_threshold_
    checks = [
        policy.CheckSpec(name="injection", stage="input", scorer=f"{M}:injection_scorer",
                         options={"detector": injection_detector}, threshold=round(thr, 6), action="block"),
        policy.CheckSpec(name="pii_in", stage="input", scorer=f"{M}:pii_scorer", options={"config": pii_config},
                         threshold=0.01, action="redact"),
        policy.CheckSpec(name="toxicity_in", stage="input", scorer=f"{M}:toxicity_scorer",
                         options={"detector": "profanity-check"}, threshold=toxicity_threshold, action="block"),
        policy.CheckSpec(name="rules", stage="output", scorer=f"{M}:rules_scorer",
                         options={"max_chars": DEFAULT_RULES["max_chars"]}, threshold=0.5, action="block"),
        policy.CheckSpec(name="toxicity_out", stage="output", scorer=f"{M}:toxicity_scorer",
                         options={"detector": "profanity-check"}, threshold=toxicity_threshold, action="block"),
    ]
    if output_pii:
        checks.insert(3, policy.CheckSpec(name="pii_out", stage="output", scorer=f"{M}:pii_scorer",
                                          options={"config": pii_config}, threshold=0.01, action="redact"))
    return policy.GuardConfig(checks=checks)
