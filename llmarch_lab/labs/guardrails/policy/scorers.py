"""The scorers: adapters (batch detectors), the built-in ones (regex, injection heuristic,
profanity, canary) and resolve_scorer, which turns a CheckSpec's scorer string into a callable."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.policy.config import CheckSpec
from llmarch_lab.labs.guardrails.policy.decisions import Entity, Score


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


def hallucination_judge(base_url: str, model: str = "qwen2.5-coder-0.5b-instruct", **kw):
    """P(hallucinated) of the reply given the conversation's system + user turns: Qwen 0.5B's yes/no
    log-probs behind an OpenAI-compatible endpoint (halluc/judge.py; on HaluEval QA test AUC 0.82,
    dialogue 0.64, summarization at chance: use it to escalate short-context answers)."""
    from llmarch_lab.labs.guardrails.halluc.judge import guard_scorer

    return guard_scorer(base_url, model, **kw)


BUILTIN_SCORERS: dict[str, Callable[..., Callable]] = {
    "regex": regex_scorer,
    "injection_heuristic": injection_heuristic,
    "profanity": profanity_scorer,
    "canary": canary_scorer,
    "hallucination_judge": hallucination_judge,
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
