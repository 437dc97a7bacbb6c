"""Verbatim PII leaks: the whitespace-tolerant pattern of a value, every occurrence of the detected
values in a text (what redaction covers on top of the spans), overlap merging, and the leak count.

    from llmarch_lab.labs.guardrails.pii import leak
    leak.value_pattern("Jane Roe")          # matches "Jane Roe", "Jane\nRoe"; not "Jane Roeder"
    leak.leaks(redacted, ["Jane Roe"])      # the values still in the redacted text
    leak.occurrences(text, spans)           # spans + every other occurrence of their values
    leak.leak_stats(texts, gold, detected, redacted)  # gold / detected leak counts of a run

A leak is a value's text found in the redacted text by value_pattern: exact case, any whitespace
between its words, not inside a longer word. Redaction (redact.redaction_spans) covers more:
case variants too (_case_ok), so no detected value is left.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Sequence

# A value's tokens are its whitespace-separated pieces; between two tokens any run of whitespace
# (spaces, tabs, line breaks) matches. A value that starts (ends) with a word character must not
# continue a longer word there: "Al" is not leaked by "Also", nor "23" by "123".
_WS = r"\s+"


def normalize(value: str) -> str:
    """The value with every whitespace run as one space, stripped."""
    return " ".join(value.split())


@functools.lru_cache(maxsize=8192)
def value_pattern(value: str):
    """The compiled pattern of one value (None for a blank one): its tokens joined by \\s+, with word
    boundaries where the value starts or ends with a letter or digit."""
    import regex as re

    tokens = value.split()
    if not tokens:
        return None
    body = _WS.join(re.escape(t) for t in tokens)
    head = r"(?<![\w])" if re.match(r"\w", tokens[0][0]) else ""
    tail = r"(?![\w])" if re.match(r"\w", tokens[-1][-1]) else ""
    return re.compile(head + body + tail)


def _case_ok(hit: str, value: str) -> bool:
    """A case variant of a value counts as the value when it is not a lowercase word where the value
    was capitalized ("BROWN" or "brown" for "Brown" in an e-mail or a URL, but not the colour in
    prose): exact hits, hits with a capital, and any hit of a value with a digit, "@", "." or no
    capital at all (e-mails, URLs, codes, lowercase handles) count."""
    if hit == value or hit != hit.lower() or value == value.lower():
        return True
    return any(c.isdigit() or c in "@." for c in value)


class _Folded:
    """The text lowercased with every whitespace run as one space, and the way back to offsets of
    the text: a value is then found with str.find (no regex to compile per value, so thousands of
    values in a long text cost little next to detecting them)."""

    def __init__(self, text: str):
        import bisect

        import regex as re

        self.text, self._bisect = text, bisect.bisect_right
        self.starts: list[int] = []   # per whitespace-separated token: its start in the folded text
        self.origins: list[int] = []  # ... and in the text
        pieces, pos = [], 0
        for m in re.finditer(r"\S+", text):
            tok = m.group()
            low = tok.lower()
            pieces.append(low if len(low) == len(tok) else tok)
            self.starts.append(pos)
            self.origins.append(m.start())
            pos += len(tok) + 1
        self.folded = " ".join(pieces)
        self._word = re.compile(r"\w")

    def _orig(self, pos: int) -> int:
        i = self._bisect(self.starts, pos) - 1
        return self.origins[i] + pos - self.starts[i]

    def is_word(self, c: str) -> bool:
        return self._word.match(c) is not None

    def find_all(self, value: str):
        """(start, end) in the text of each case-folded, whitespace-tolerant occurrence of value
        that does not start or end inside a word (where value_pattern puts word boundaries)."""
        toks = value.split()
        needle = " ".join(t.lower() if len(t.lower()) == len(t) else t for t in toks)
        if not needle:
            return
        head, tail = self.is_word(needle[0]), self.is_word(needle[-1])
        text, at = self.text, self.folded.find(needle)
        while at != -1:
            a, b = self._orig(at), self._orig(at + len(needle) - 1) + 1
            if not (head and a > 0 and self.is_word(text[a - 1])) and not (tail and b < len(text) and self.is_word(text[b])):
                yield a, b
            at = self.folded.find(needle, at + 1)


def occurrences(text: str, spans: Sequence[dict]) -> list[dict]:
    """Spans for every occurrence in `text` of a detected value (text[start:end] of each span), at
    any whitespace between its words and in the case variants _case_ok accepts; each comes with the
    type and score of the span that found the value. The input spans are included."""
    out = [dict(s) for s in spans]
    if not spans:
        return out
    folded = _Folded(text)
    seen: set[str] = set()
    for s in sorted(spans, key=lambda s: -(s["end"] - s["start"])):
        value = normalize(text[s["start"]:s["end"]])
        if not value or value in seen:
            continue
        seen.add(value)
        for a, b in folded.find_all(value):
            if _case_ok(normalize(text[a:b]), value):
                out.append({"entity_type": s["entity_type"], "start": a, "end": b, "score": s["score"]})
    return out


def merge_spans(spans: Iterable[dict], text: str = "") -> list[dict]:
    """Overlapping or touching spans as one span each (sorted), and, when `text` is given, two spans of
    one type with only spaces or tabs between them ("John" "Smith"; a line break keeps lines apart).
    A merged span takes the type of its longest part (ties: the higher score) and the highest score."""
    out: list[dict] = []
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        if out:
            last = out[-1]
            gap = text[last["end"]:s["start"]] if text else None
            joined = s["start"] <= last["end"] or (
                gap is not None and not gap.strip(" \t") and s["entity_type"] == last["entity_type"])
            if joined:
                longer = (s["end"] - s["start"], s["score"]) > (last["_len"], last["_score"])
                if longer:
                    last.update(entity_type=s["entity_type"], _len=s["end"] - s["start"], _score=s["score"])
                last["end"] = max(last["end"], s["end"])
                last["score"] = max(last["score"], s["score"])
                continue
        out.append({**s, "_len": s["end"] - s["start"], "_score": s["score"]})
    return [{k: v for k, v in s.items() if not k.startswith("_")} for s in out]


def leaks(redacted: str, values: Iterable[str]) -> list[str]:
    """The values (whitespace-normalised) found in `redacted` by value_pattern: exact case, any
    whitespace between words, not inside a longer word."""
    found = []
    for v in values:
        pat = value_pattern(normalize(v))
        if pat is not None and pat.search(redacted):
            found.append(v)
    return found


def leak_stats(texts: Sequence[str], gold: Sequence[Sequence[str]], detected: Sequence[Sequence[dict]],
               redacted: Sequence[str]) -> dict[str, Any]:
    """Leak counts over a redaction run: per text its gold values, its detected spans and its redacted
    text. Returns {gold_spans, gold_leaks, gold_leak_rate, detected_spans, detected_leaks, per_text,
    examples}: per_text the leaked gold values of each text, examples (text index, leaked gold
    value) for the first 50 gold leaks."""
    gold_n = gold_leaked = det_n = det_leaked = 0
    examples: list[tuple[int, str]] = []
    per_text: list[list[str]] = []
    for i, (text, g, d, red) in enumerate(zip(texts, gold, detected, redacted)):
        found = leaks(red, g)
        per_text.append(found)
        gold_n += len(g)
        gold_leaked += len(found)
        examples.extend((i, v) for v in found[: max(0, 50 - len(examples))])
        values = [text[s["start"]:s["end"]] for s in d]
        det_n += len(values)
        det_leaked += len(leaks(red, values))
    return {"gold_spans": gold_n, "gold_leaks": gold_leaked, "gold_leak_rate": gold_leaked / gold_n if gold_n else 0.0,
            "detected_spans": det_n, "detected_leaks": det_leaked, "per_text": per_text, "examples": examples}
