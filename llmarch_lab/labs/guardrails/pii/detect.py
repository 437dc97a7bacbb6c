"""Detection: text in, resolved spans out (windows for long texts, spaCy spans trimmed, overlaps resolved, list items and speaker labels beside a detected one added)."""

from __future__ import annotations

from typing import Any

from llmarch_lab.labs.guardrails.pii.analyzer import analyzer
from llmarch_lab.labs.guardrails.pii.config import CHUNK_CHARS, CHUNK_OVERLAP, DEFAULT, LANGUAGE, PiiConfig

# ------------------------------------------------------------------------------------ detection

def as_text(text: Any) -> str:
    """str for any input: bytes decode as UTF-8 with errors="replace", None is "", and a lone
    surrogate (not encodable, which the hash and encrypt operators need) becomes "?", one
    character for one, so offsets into the text stay those of the input."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", errors="replace")
    text = text if isinstance(text, str) else str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def text_windows(n: int, text: str) -> list[tuple[int, int]]:
    """[start, end) windows of at most CHUNK_CHARS covering text, overlapping by CHUNK_OVERLAP,
    each cut at whitespace where one is near, so an entity is whole in at least one window."""
    if n <= CHUNK_CHARS:
        return [(0, n)]
    out, start = [], 0
    while start < n:
        end = min(n, start + CHUNK_CHARS)
        if end < n:
            cut = max(text.rfind(c, start + CHUNK_CHARS // 2, end) for c in "\n ")
            end = cut if cut > start else end
        out.append((start, end))
        if end >= n:
            break
        nxt = end - CHUNK_OVERLAP
        ws = text.find(" ", nxt, end)
        start = ws + 1 if ws != -1 else nxt
    return out


def _overlaps(a, b) -> bool:
    return a.start < b.end and b.start < a.end


def _is_ner(r) -> bool:
    from presidio_analyzer import RecognizerResult

    return (r.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY) == "SpacyRecognizer"


def _trim_ner(results: list, text: str) -> list:
    """Cut spaCy spans at the first line break (spaCy runs names on into the next line's label:
    "Sieuwerd Heuver\nPhone") and strip the punctuation it leaves at either end."""
    out = []
    for r in results:
        if _is_ner(r):
            piece = text[r.start:r.end]
            lead = len(piece) - len(piece.lstrip(" \t\n,.;:>-"))
            cut = piece.find("\n", lead)
            end = r.start + (cut if cut != -1 else len(piece))
            start = r.start + lead
            while end > start and text[end - 1] in " \t\n,;:>-":
                end -= 1
            if end <= start:
                continue
            r.start, r.end = start, end
        out.append(r)
    return out


_MONTHS_DAYS = (r"(?i:\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\b|"
                r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b)")
_DURATION = (r"(?i)^(?:the |a |an |for )?\d+(?:\+|th|st|nd|rd)?\s*\+?\s*(?:years?|months?|weeks?|days?|hours?|minutes?)\b"
             r"|^(?:the )?(?:\d0|\d{3}0)'?s$|\b(?:last|next|this|every|coming|previous)\b")


def _absolute_dates(results: list, text: str) -> list:
    """Keep spaCy DATE_TIME spans that name a date (a digit, a month, a weekday) and are neither a
    duration ("8+ years", "10th year"), a decade ("the 60s") nor relative ("the last Sunday"):
    "next week" or "a couple of months" identify no one."""
    import regex as re

    out = []
    for r in results:
        if _is_ner(r) and r.entity_type == "DATE_TIME":
            piece = text[r.start:r.end]
            if re.search(_DURATION, piece) or not (re.search(r"\d", piece) or re.search(_MONTHS_DAYS, piece)):
                continue
        out.append(r)
    return out


_JOINERS = r"(?i:as|at|in|of|and|or|the|for|to|from|with|by)"


def _rest(r, hits: list[tuple[int, int]], text: str) -> bool:
    """Cut a spaCy span to its longest piece outside the pattern hits it overlaps, less the spaces,
    punctuation and joining words at its ends ("Futureadvisor as Fumigator" around the title hit
    "Fumigator" keeps "Futureadvisor"). False when no piece with two letters is left."""
    import regex as re

    pieces, pos = [], r.start
    for a, b in sorted(hits):
        pieces.append((pos, min(a, r.end)))
        pos = max(pos, b)
    pieces.append((pos, r.end))
    best = None
    for a, b in pieces:
        m = re.search(rf"(?:^[\s,.;:()\-]*(?:{_JOINERS}\s+)?)(.*?)(?:(?:\s+{_JOINERS})?[\s,.;:()\-]*$)", text[a:b] if b > a else "",
                      re.S)
        if m and sum(c.isalpha() for c in m.group(1)) >= 2 and (best is None or m.end(1) - m.start(1) > best[1] - best[0]):
            best = (a + m.start(1), a + m.end(1))
    if best is None:
        return False
    r.start, r.end = best
    return True


def _resolve(results: list, text: str) -> list:
    """Pattern hits win over a spaCy span that overlaps them (the span keeps its longest piece
    outside them, _rest), and a span inside a longer one goes (a URL inside an e-mail address, a
    date inside a date-time, a number inside an address). Presidio's remove_duplicates does the
    second only within one entity type. Both are sweeps over sorted offsets, so a text with
    thousands of hits stays linear-logarithmic."""
    import bisect

    patterns = sorted((r for r in results if not _is_ner(r)), key=lambda r: r.start)
    starts = [p.start for p in patterns]
    reach, top = [], -1  # reach[i]: the furthest end among patterns[:i + 1]
    for p in patterns:
        top = max(top, p.end)
        reach.append(top)

    def kept_ner(r) -> bool:
        i = bisect.bisect_left(starts, r.end)  # patterns[:i] start before r ends
        hits = []
        while i > 0 and reach[i - 1] > r.start:  # reach only grows: stop at the first that ends before r
            i -= 1
            if patterns[i].end > r.start:
                hits.append((patterns[i].start, patterns[i].end))
        return not hits or _rest(r, hits, text)

    kept = patterns + [r for r in results if _is_ner(r) and kept_ner(r)]
    out, furthest, i = [], -1, 0
    kept.sort(key=lambda r: (r.start, -r.end))
    while i < len(kept):  # spans with the same offsets form one group: none contains another
        j = i
        while j < len(kept) and (kept[j].start, kept[j].end) == (kept[i].start, kept[i].end):
            j += 1
        if kept[i].end > furthest:  # no earlier (starting no later, longer) span reaches this end
            out.extend(kept[i:j])
        furthest = max(furthest, kept[i].end)
        i = j
    return out

# A list of names, places or companies: "Romi, Erik, Amy and Kristen"; an item is one to three
# capitalized words or one lowercase word. A speaker label opens a line: "Ubul: What a wife."
_W = r"[\p{L}\p{M}'’\-]*"
_ITEM = rf"(?<![\p{{L}}\p{{M}}'’\-])(?:\p{{Lu}}{_W}(?:[ \t]+\p{{Lu}}{_W}){{0,2}}|(?!(?:and|or)\b)\p{{Ll}}{_W})(?![\p{{L}}\p{{M}}])"
_SEP = r"(?:[ \t]*,[ \t]*(?:(?:and|or|&)[ \t]+)?|[ \t]+(?:and|or|&)[ \t]+)"
_LIST = rf"{_ITEM}(?:{_SEP}{_ITEM})+"
_LABEL = r"(?m)^[ \t>]*([\p{L}\p{M}][\p{L}\p{M}'’\-]*(?:[ \t]+\p{Lu}[\p{L}\p{M}'’\-]*)?)[ \t]*:"
_NOT_NAMES = frozenset(("the", "a", "an", "i", "we", "you", "he", "she", "they", "it", "this", "that", "yes", "no",
                        "but", "so", "yet", "then", "which", "who", "what", "however", "also", "well", "now",
                        "phone", "e-mail", "email", "website", "address", "name", "when", "where", "mobile", "desk",
                        "fax", "personal info", "date", "time", "subject", "to", "from", "cc", "note", "answer",
                        "question", "q", "re", "tel", "zip", "city", "country", "title", "company"))


def _slot_fill(slots: list[tuple[int, int]], results: list, text: str, is_list: bool) -> list:
    """One group of slots (the items of one list, or the speaker labels of one text): when at least
    a third of the slots hold a detected span (for a list, one that lies within the list), each empty
    slot gets a span of the detected slots' most common type. An empty slot is skipped when it is a
    stop or form-label word, when it is lowercase in a text that has capitals, or when it is a
    list's first item and opens a sentence ("However, John and Mary")."""
    from collections import Counter

    from presidio_analyzer import RecognizerResult

    lo, hi = (slots[0][0], slots[-1][1]) if is_list else (0, len(text))
    hits = [[r for r in results if r.start < b and a < r.end and lo <= r.start and r.end <= hi] for a, b in slots]
    found = [r for h in hits for r in h]
    n_found = sum(bool(h) for h in hits)
    if not n_found or 3 * n_found < len(slots):
        return []
    kind = Counter(r.entity_type for r in found).most_common(1)[0][0]
    score = min(r.score for r in found)
    lower_ok = text == text.lower()
    out = []
    for i, ((a, b), h) in enumerate(zip(slots, hits)):
        word = text[a:b]
        opens = is_list and i == 0 and text[:a].rstrip(" \t")[-1:] in ("", ".", "!", "?", "\n")
        if h or opens or word.lower() in _NOT_NAMES or (word[0].islower() and not lower_ok):
            continue
        out.append(RecognizerResult(kind, a, b, score,
                                    recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: "SlotPropagation"}))
    return out


def _propagate(results: list, text: str) -> list:
    """The results plus the items of a list and the speaker labels next to detected ones (_slot_fill)."""
    import regex as re

    out = list(results)
    for m in re.finditer(_LIST, text):
        items = [(m.start() + i.start(), m.start() + i.end()) for i in re.finditer(_ITEM, m.group())]
        out += _slot_fill(items, results, text, is_list=True)
    labels = [(m.start(1), m.end(1)) for m in re.finditer(_LABEL, text)]
    if len(labels) > 1:
        out += _slot_fill(labels, results, text, is_list=False)
    return out


def _analyze(text: str, cfg: PiiConfig) -> list:
    from presidio_analyzer import EntityRecognizer

    eng = analyzer(cfg)
    entities = list(cfg.entities) if cfg.entities else None
    results = []
    windows = text_windows(len(text), text)
    for s, e in windows:
        chunk = text[s:e]
        if not chunk.strip():
            continue
        allow = {"allow_list": list(cfg.allow_list), "allow_list_match": "regex"} if cfg.allow_list else {}
        for r in eng.analyze(text=chunk, language=LANGUAGE, entities=entities, score_threshold=cfg.threshold,
                             return_decision_process=False, **allow):
            r.start += s
            r.end += s
            results.append(r)
    if len(windows) > 1:  # an entity in an overlap is found twice
        results = EntityRecognizer.remove_duplicates(results)
    if cfg.trim_ner:
        results = _trim_ner(results, text)
    if cfg.absolute_dates:
        results = _absolute_dates(results, text)
    if cfg.resolve_overlaps:
        results = _resolve(results, text)
    if cfg.propagate:
        results = _propagate(results, text)
    return sorted(results, key=lambda r: (r.start, r.end, r.entity_type))


def detect(text: str | bytes, config: PiiConfig = DEFAULT) -> list[dict]:
    """PII spans in text: [{entity_type, start, end, score}], offsets into the (decoded) text.

    Never raises on odd input: None or empty or whitespace-only text has no spans, bytes are
    decoded as UTF-8 with errors="replace", long text is analyzed in overlapping windows."""
    text = as_text(text)
    if not text.strip():
        return []
    return [{"entity_type": r.entity_type, "start": int(r.start), "end": int(r.end), "score": float(r.score)}
            for r in _analyze(text, config)]
