"""The lab's guard stack: the real detectors as policy checks, one config for the notebook, the
benchmark and the gateway.

    cfg = stack.default_config()             # GuardConfig: scorers named "module:attr" (below)
    guard = policy.Guard(cfg)                 # loads the detectors once
    guard.call(messages, endpoint)            # input checks -> LLM -> output checks

Input: prompt injection (a detector from injection.py, block), PII (Presidio via pii.py, redact),
toxicity (toxicity.py, block). Output: PII (redact), toxicity (block) and business rules
(rules/: banned topics, forbidden phrases, a length cap; block). The gateway process builds the
same Guard from the same JSON, because every scorer here is a factory named by a string (always
with options: policy.resolve_scorer calls a "module:attr" with options, and uses it as the
scorer itself without). Detectors are built by name (injection.build, toxicity.build), each
once per process, so the input and output toxicity checks share one detector and checks built
on the same encoder share its per-text embeddings.

Human escalation: the input injection and toxicity checks have a band [escalate_at, threshold)
that escalates to a reviewer (policy.CheckSpec.escalate_at); by default escalate_at =
escalate_frac x threshold (0.5), a parameter until a band is chosen on dev data.

Latency (one thread, per request): every scorer keeps its last MEMO scores per text (the guard
service scores a user turn twice: the input check, then redact_messages; the audit log's
redaction reuses the PII spans); texts shorter than `min_chars` (default 2, stripped) score 0
without a model; with `ner_prefilter` (default on) the PII check runs spaCy only when
`might_hold_ner` says the text may hold a named entity (a capitalized word other than a common
sentence opener, a digit, an "@", or no capital at all); other texts get the same recognizers without NER
(Presidio's no-op engine), which can differ from the spaCy run only where NER would have
found a lower-case entity or where spaCy's lemmas would have raised a pattern hit's score.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

from llmarch_lab.labs.guardrails import policy

M = "llmarch_lab.labs.guardrails.stack"
MEMO = 1024  # texts whose scores each scorer keeps (LRU)
# The stack's toxicity thresholds where they differ from the detector's own (None in default_config).
TOXICITY_THRESHOLDS = {"profanity-check": 0.8}


def _memo(fn):
    """An LRU of `fn(text)` per text (thread-safe), the scorer's per-text cache."""
    return functools.lru_cache(maxsize=MEMO)(fn)


def _skip(text: str, min_chars: int) -> bool:
    return len(text.strip()) < min_chars


@functools.lru_cache(maxsize=None)
def _injection(detector: str):
    from llmarch_lab.labs.guardrails import injection

    det = injection.build(detector)
    det.warmup()
    return det


def injection_scorer(detector: str = "union-lr", min_chars: int = 2):
    """text -> the detector's score; the check's threshold defaults to the detector's own
    (chosen by cross-validation on the training file)."""
    det = _injection(detector)

    @_memo
    def score(text: str) -> float:
        return 0.0 if _skip(text, min_chars) else float(det.score([text])[0])

    return score


def injection_threshold(detector: str = "union-lr") -> float:
    return float(_injection(detector).threshold)


# ------------------------------------------------------------------------------ PII

STARTERS = frozenset("""
a an the this that these those there here it its i we you he she they my our your his her their me us them
what which who whom whose when where why how is are was were be been being do does did can could will would
shall should may might must have has had if in on at for to of from by with as and or but so not no yes
please hi hello hey dear thanks thank also however then now after before because since while although though
some any all each every many much most more other another one both either neither such same let lets just
""".split())
_CAPITAL = re.compile(r"[A-Z][\w'\u2019-]*")
_ALWAYS = re.compile(r"[\d@]")
_UPPER = re.compile(r"[A-Z]")


def might_hold_ner(text: str) -> bool:
    """The NER pre-filter: True when spaCy might find an entity here: a digit or "@" anywhere, a
    capitalized word that is not a common word opening a sentence ("What", "The", "I"), or no
    capital at all (a writer who does not capitalize may write names in lower case too)."""
    if _ALWAYS.search(text) or not _UPPER.search(text):
        return True
    for m in _CAPITAL.finditer(text):
        word = m.group()
        if word == "I" or word.startswith(("I'", "I\u2019")):
            continue
        before = text[:m.start()].rstrip(" \t\"'(\u201c\u2018*-")
        opens = not before or before[-1] in ".!?:;\n"
        if not opens or word.lower() not in STARTERS:
            return True
    return False


@functools.lru_cache(maxsize=None)
def _pii_config(config: str, ner: bool):
    from llmarch_lab.labs.guardrails import pii

    cfg = pii.configs()[config]
    if not ner and cfg.engine == "spacy":  # the same recognizers and threshold, no spaCy
        cfg = dataclasses.replace(cfg, engine="no_op")
    pii.analyzer(cfg)  # build the analyzer (and load spaCy) now, not on the first request
    return cfg


@functools.lru_cache(maxsize=MEMO)
def _pii_spans(config: str, ner: bool, text: str) -> tuple:
    from llmarch_lab.labs.guardrails import pii

    return tuple(pii.detect(text, _pii_config(config, ner)))


def pii_spans(text: str, config: str = "spacy/tuned", ner_prefilter: bool = True, min_chars: int = 2) -> list[dict]:
    """Presidio's spans for text (cached per text): what the PII check and the audit redaction use."""
    if _skip(text, min_chars):
        return []
    return list(_pii_spans(config, not ner_prefilter or might_hold_ner(text), text))


def pii_scorer(config: str = "spacy/tuned", ner_prefilter: bool = True, min_chars: int = 2):
    """text -> Score(max entity score, entity spans); the guard replaces the spans with <TYPE>
    (policy.replace_spans merges overlaps the way Presidio's replace operator does)."""
    _pii_config(config, True)
    if ner_prefilter:
        _pii_config(config, False)

    from llmarch_lab.labs.guardrails import pii

    def score(text: str) -> policy.Score:
        # every occurrence of a detected value, merged: the guard leaks no value it found once
        ents = pii.redaction_spans(text, pii_spans(text, config, ner_prefilter, min_chars))
        return policy.Score(max((e["score"] for e in ents), default=0.0),
                            [policy.Entity(e["start"], e["end"], e["entity_type"], e["score"]) for e in ents])

    return score


def pii_redactor(config: str = "spacy/tuned", ner_prefilter: bool = False):
    """text -> pii.redact(text) on the cached spans (the audit log's redactor: by default always
    with NER, so the log never depends on the pre-filter)."""
    from llmarch_lab.labs.guardrails import pii

    cfg = _pii_config(config, True)
    return lambda text: pii.anonymize(text, cfg, spans=pii_spans(text, config, ner_prefilter, 1)).text


# ------------------------------------------------------------------------------ toxicity

def default_toxicity() -> str:
    """toxicity.build's default detector name (the stack follows whatever it is)."""
    from llmarch_lab.labs.guardrails import toxicity

    return inspect.signature(toxicity.build).parameters["name"].default


@functools.lru_cache(maxsize=None)
def _toxicity(detector: str):
    from llmarch_lab.labs.guardrails import toxicity

    det = toxicity.build(detector)
    if hasattr(det, "warmup"):
        det.warmup()
    return det


def toxicity_scorer(detector: str = "profanity-check", min_chars: int = 2):
    det = _toxicity(detector)

    @_memo
    def score(text: str) -> float:
        return 0.0 if _skip(text, min_chars) else float(det.score([text])[0])

    return score


def toxicity_default_threshold(detector: str) -> float:
    return float(TOXICITY_THRESHOLDS.get(detector, getattr(_toxicity(detector), "threshold", 0.5)))


# ------------------------------------------------------------------------------ rules

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


# ------------------------------------------------------------------------------ the config

HOLD_MESSAGE = ("I'm sorry, but I can't answer that right away: your request has been passed to a human "
                "reviewer.")


def _band(threshold: float, explicit: float | None, frac: float | None) -> float | None:
    if explicit is not None:
        return explicit
    return None if frac is None else round(frac * threshold, 6)


def default_config(injection_detector: str = "union-lr", pii_config: str = "spacy/tuned",
                   injection_threshold_: float | None = None, toxicity_threshold: float | None = None,
                   output_pii: bool = True, toxicity_detector: str | None = None,
                   escalate_frac: float | None = 0.5, injection_escalate_at: float | None = None,
                   toxicity_escalate_at: float | None = None, ner_prefilter: bool = True) -> policy.GuardConfig:
    """The lab's stack as a GuardConfig (JSON-able: the gateway's guard service loads it too).

    Thresholds default to the detectors' own (toxicity: TOXICITY_THRESHOLDS where listed). The
    input injection and toxicity checks escalate in [escalate_at, threshold): escalate_at is
    `*_escalate_at` when given, else escalate_frac x threshold; escalate_frac=None and no
    explicit bounds = block-only. toxicity_detector None: toxicity.build's default."""
    tox = toxicity_detector or default_toxicity()
    thr = injection_threshold(injection_detector) if injection_threshold_ is None else injection_threshold_
    tthr = toxicity_default_threshold(tox) if toxicity_threshold is None else toxicity_threshold
    thr, tthr = round(thr, 6), round(tthr, 6)
    pii_opts = {"config": pii_config, "ner_prefilter": ner_prefilter}
    checks = [
        policy.CheckSpec(name="injection", stage="input", scorer=f"{M}:injection_scorer",
                         options={"detector": injection_detector}, threshold=thr, action="block",
                         escalate_at=_band(thr, injection_escalate_at, escalate_frac)),
        policy.CheckSpec(name="pii_in", stage="input", scorer=f"{M}:pii_scorer", options=pii_opts,
                         threshold=0.01, action="redact"),
        policy.CheckSpec(name="toxicity_in", stage="input", scorer=f"{M}:toxicity_scorer",
                         options={"detector": tox}, threshold=tthr, action="block",
                         escalate_at=_band(tthr, toxicity_escalate_at, escalate_frac)),
        policy.CheckSpec(name="rules", stage="output", scorer=f"{M}:rules_scorer",
                         options={"max_chars": DEFAULT_RULES["max_chars"]}, threshold=0.5, action="block"),
        policy.CheckSpec(name="toxicity_out", stage="output", scorer=f"{M}:toxicity_scorer",
                         options={"detector": tox}, threshold=tthr, action="block"),
    ]
    if output_pii:
        checks.insert(3, policy.CheckSpec(name="pii_out", stage="output", scorer=f"{M}:pii_scorer",
                                          options=dict(pii_opts), threshold=0.01, action="redact"))
    return policy.GuardConfig(checks=checks, hold_message=HOLD_MESSAGE)
