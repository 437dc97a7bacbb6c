"""The business-rule validators: banned topics, forbidden phrases, character and token caps,
each giving a Verdict, and the RuleSet applying them together."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules.text import as_text

MAX_SPANS = 50  # spans kept per verdict (a 100k-char input can match thousands of times)


@dataclass(frozen=True)
class Verdict:
    """One rule on one text. `span` is the first offending (start, end), None when it passed."""

    rule: str
    passed: bool
    span: tuple[int, int] | None = None
    excerpt: str = ""  # the offending text (at most 200 chars)
    spans: tuple = ()  # every offending span, at most MAX_SPANS
    detail: str = ""


def _verdict(rule: str, text: str, spans: list[tuple[int, int]], detail: str = "") -> Verdict:
    if not spans:
        return Verdict(rule, True)
    s, e = spans[0]
    return Verdict(rule, False, (s, e), text[s:e][:200], tuple(spans[:MAX_SPANS]), detail)


def _phrase_regex(phrase: str) -> str:
    """A keyword or phrase as a regex: escaped, any whitespace between words, word boundaries
    where the phrase starts or ends with a word character."""
    words = phrase.split()
    if not words:
        raise LabError(f"empty keyword or phrase {phrase!r}")
    body = r"\s+".join(re.escape(w) for w in words)
    left = r"\b" if re.match(r"\w", words[0]) else ""
    right = r"\b" if re.search(r"\w$", words[-1]) else ""
    return left + body + right


def _compile(keywords: Iterable[str], patterns: Iterable[str], where: str) -> re.Pattern | None:
    parts = [_phrase_regex(as_text(k)) for k in keywords or ()]
    for p in patterns or ():
        try:
            re.compile(p)
        except re.error as e:
            raise LabError(f"{where}: bad regex {p!r}: {e}") from None
        parts.append(f"(?:{p})")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _find(rx: re.Pattern | None, text: str) -> list[tuple[int, int]]:
    if rx is None:
        return []
    spans = []
    for m in rx.finditer(text):
        if m.end() > m.start():  # a pattern that can match empty must not flag every position
            spans.append(m.span())
            if len(spans) >= MAX_SPANS:
                break
    return spans


class BannedTopic:
    """A topic the text must not touch: keyword/phrase lists and/or regex patterns."""

    def __init__(self, topic: str, keywords: Iterable[str] = (), patterns: Iterable[str] = ()):
        self.topic = str(topic)
        self.rule = f"banned_topic:{self.topic}"
        self._rx = _compile(keywords, patterns, self.rule)
        if self._rx is None:
            raise LabError(f"{self.rule}: give at least one keyword or pattern")

    def check(self, text) -> Verdict:
        t = as_text(text)
        return _verdict(self.rule, t, _find(self._rx, t), f"topic {self.topic!r} mentioned")


def banned_topics(keywords: Mapping[str, Iterable[str]] | None = None,
                  patterns: Mapping[str, Iterable[str]] | None = None) -> list[BannedTopic]:
    """One BannedTopic per topic named in either mapping (topic -> keywords, topic -> regexes)."""
    keywords, patterns = dict(keywords or {}), dict(patterns or {})
    return [BannedTopic(t, keywords.get(t, ()), patterns.get(t, ())) for t in dict.fromkeys([*keywords, *patterns])]


class ForbiddenPhrases:
    """Phrases the text must not contain (case-insensitive, any whitespace between words)."""

    def __init__(self, phrases: Iterable[str], rule: str = "forbidden_phrase"):
        self.rule = rule
        self.phrases = [as_text(p) for p in phrases]
        self._rx = _compile(self.phrases, (), rule)

    def check(self, text) -> Verdict:
        t = as_text(text)
        return _verdict(self.rule, t, _find(self._rx, t), "forbidden phrase used")


class MaxChars:
    """At most `limit` characters (of the decoded text); the span is everything past the cap."""

    def __init__(self, limit: int, rule: str = "max_chars"):
        if not isinstance(limit, int) or limit < 0:
            raise LabError(f"{rule}: limit must be an integer >= 0, got {limit!r}")
        self.limit, self.rule = limit, rule

    def check(self, text) -> Verdict:
        t = as_text(text)
        spans = [(self.limit, len(t))] if len(t) > self.limit else []
        return _verdict(self.rule, t, spans, f"{len(t)} characters > {self.limit}")


_PIECE = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text) -> int:
    """A tokenizer-free token estimate: each word costs ceil(len/4) tokens, each other symbol
    (punctuation, emoji) one. Hand-written: exact counts need the serving model's tokenizer
    (pass MaxTokens(count=...)); this errs high on long words, as a cap check should."""
    return sum(math.ceil(len(m.group()) / 4) for m in _PIECE.finditer(as_text(text)))


class MaxTokens:
    """At most `limit` tokens: approx_tokens by default, or `count(text) -> int` (a real
    tokenizer, e.g. lambda t: len(tok.encode(t))). The span starts where the cap is crossed."""

    def __init__(self, limit: int, count: Callable[[str], int] | None = None, rule: str = "max_tokens"):
        if not isinstance(limit, int) or limit < 0:
            raise LabError(f"{rule}: limit must be an integer >= 0, got {limit!r}")
        self.limit, self.count, self.rule = limit, count, rule

    def check(self, text) -> Verdict:
        t = as_text(text)
        if self.count is None:
            n, start = 0, None
            for m in _PIECE.finditer(t):
                n += math.ceil(len(m.group()) / 4)
                if start is None and n > self.limit:
                    start = m.start()
        else:
            n = int(self.count(t))
            start = self._crossing(t) if n > self.limit else None
        spans = [(start, len(t))] if start is not None else []
        return _verdict(self.rule, t, spans, f"~{n} tokens > {self.limit}")

    def _crossing(self, t: str) -> int:
        lo, hi = 0, len(t)  # the longest prefix within the cap, by bisection (log n tokenizer calls)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(self.count(t[:mid])) <= self.limit:
                lo = mid
            else:
                hi = mid - 1
        return lo


@dataclass
class RuleReport:
    passed: bool
    verdicts: list[Verdict]

    @property
    def violations(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]


class RuleSet:
    """Rules applied together; passed when every rule passed."""

    def __init__(self, rules: Iterable):
        self.rules = list(rules)

    def check(self, text) -> RuleReport:
        verdicts = [r.check(text) for r in self.rules]
        return RuleReport(all(v.passed for v in verdicts), verdicts)
