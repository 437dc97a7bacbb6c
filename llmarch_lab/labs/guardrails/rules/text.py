"""Text handling shared by the rules and the groundedness check: any input as text, sentence
splitting, content tokens."""

from __future__ import annotations

import re


def as_text(x) -> str:
    """Any input as text: bytes are decoded as UTF-8 with errors replaced, None is ''."""
    if x is None:
        return ""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("utf-8", errors="replace")
    return x if isinstance(x, str) else str(x)


_ABBREV = {"e.g", "i.e", "vs", "et al", "al", "etc", "fig", "figs", "dr", "mr", "mrs", "ms", "approx",
           "ca", "cf", "resp", "incl", "eq", "ref", "refs", "st", "jr", "sr", "u.s", "e.u"}
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*\n")


def split_sentences(text) -> list[tuple[str, int, int]]:
    """(sentence, start, end) in order. A regex splitter, hand-written because nltk's punkt
    needs a data download this lab cannot make: it breaks after . ! ? followed by space, or at a
    blank line, but not after common abbreviations (e.g., vs., et al.). Decimals (p < 0.05) never break: there is no space after their dot."""
    t = as_text(text)
    out, start = [], 0
    for m in _BOUNDARY.finditer(t):
        head = t[start:m.start()]
        word = re.search(r"(\w+(?:\.\w+)*)$", head)
        w = word.group(1).lower() if word else ""
        if m.group().startswith(".") and w in _ABBREV:
            continue
        seg = t[start:m.end()]
        if seg.strip():
            s = start + len(seg) - len(seg.lstrip())
            out.append((t[s:m.end()].rstrip(), s, s + len(t[s:m.end()].rstrip())))
        start = m.end()
    seg = t[start:]
    if seg.strip():
        s = start + len(seg) - len(seg.lstrip())
        out.append((seg.strip(), s, s + len(seg.strip())))
    return out



_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "the a an and or of to in on for with by at from as is are was were be been being this that these those "
    "it its we our they their there than then which who whom what when where how not no nor but if so such "
    "may might can could would should will shall do does did has have had also into over under between "
    "more most less least very all any each both other some only same study results patients".split())


def content_tokens(text) -> set[str]:
    """Lower-cased word tokens minus stop words (and one-character tokens)."""
    return {w for w in (x.lower() for x in _WORD.findall(as_text(text))) if len(w) > 1 and w not in _STOP}
