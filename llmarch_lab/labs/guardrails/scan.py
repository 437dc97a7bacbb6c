"""Scan any file with one guardrail check: `llmarch-lab guard scan` (a stable interface).

    llmarch-lab guard scan --check injection --in prompts.jsonl --out flagged.jsonl
    llmarch-lab guard scan --check pii --in tickets.csv --out pii.jsonl --detector spacy/tuned
    llmarch-lab guard scan --check toxicity --in chat.parquet --out tox.jsonl --text-column message

FILE is .jsonl, .csv or .parquet. OUT gets one JSON line per input row, in input order: the row's
own fields plus `score` (float in [0, 1]), `flagged` (bool: score >= the detector's threshold)
and `latency_ms` (this row's check alone); for pii also `entities` ([{entity_type, start, end,
score}]) and `redacted` (the text with each entity replaced by <TYPE>); a pii row's score is its
highest entity score (0 without entities) and it is flagged when it has any entity.

OUT is written through a temporary file and renamed at the end: a failed or killed scan leaves no
half-written OUT, and every output line is valid JSON (a NaN or infinity is written as null).
Text cells that are empty, whitespace, emoji, very long or not valid UTF-8 are scanned like any
other (never a crash). An unknown check or detector, a missing column, an unreadable file, or any
row whose text cell is missing, null, a number, a boolean, an object or a list is one line
(LabError, naming the file, the line (parquet: the row) and the column) before anything is
scanned or written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmarch_lab import LabError
from llmarch_lab.common.files import atomic_path, check_output, dumps_json, jsonl_objects

CHECKS = ("injection", "pii", "toxicity")
# The defaults are the detectors validated on outside sources (outside/): union-lr kept every dev
# benign source within 4% FPR where cascade's minilm-lr blocked 29-31% of benign outside prompts.
DEFAULT_DETECTOR = {"injection": "union-lr", "pii": "spacy/tuned", "toxicity": "tox-ensemble"}
SUFFIXES = (".jsonl", ".csv", ".parquet")


def detector_names(check: str) -> tuple[str, ...]:
    if check == "injection":
        from llmarch_lab.labs.guardrails import injection

        return tuple(injection.DETECTORS)
    if check == "toxicity":
        from llmarch_lab.labs.guardrails import toxicity

        return tuple(toxicity.DETECTORS)
    if check == "pii":
        from llmarch_lab.labs.guardrails import pii

        return tuple(pii.configs())
    raise LabError(f"--check {check!r}: valid are {', '.join(CHECKS)}")


def read_rows(path: Path, text_column: str) -> list[dict[str, Any]]:
    """The file's rows as dicts, in order, each with a text cell; LabError naming the file (and the
    line or row) when the file is unreadable or any row's text cell is missing or not text. Every
    row is checked before the caller scans or writes anything."""
    if path.suffix.lower() not in SUFFIXES:
        raise LabError(f"--in {path}: unsupported file type {path.suffix or '(none)'!r} (valid: {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise LabError(f"--in {path}: {'not a file' if path.exists() else 'no such file'}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            # odd bytes become U+FFFD, not a crash
            located = [(f"line {n}", obj) for n, obj in jsonl_objects(path, where=f"--in {path}", errors="replace")]
        elif suffix == ".csv":
            located = _csv_rows(path)
        else:
            import pandas as pd

            located = [(f"row {i}", r) for i, r in enumerate(pd.read_parquet(path).to_dict(orient="records"), 1)]
    except LabError:
        raise
    except Exception as e:  # noqa: BLE001 - csv/pyarrow raise many types for a broken file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LabError(f"--in {path}: cannot read it as {suffix[1:]} ({first})") from None
    rows = [r for _, r in located]
    if rows and not any(text_column in r for r in rows):
        cols = sorted({k for r in rows[:100] for k in r})
        raise LabError(f"--in {path}: no column {text_column!r} (columns: {', '.join(map(str, cols)) or 'none'}; "
                       "choose one with --text-column)")
    for where, row in located:
        row[text_column] = text_cell(row, text_column, f"--in {path} {where}")
    return rows


def text_cell(row: dict[str, Any], column: str, where: str) -> str:
    """The row's text: a string (empty allowed; bytes decoded, odd bytes as U+FFFD); a missing cell,
    null, number, boolean, object or list is a LabError naming WHERE and the column."""
    if column not in row:
        have = ", ".join(map(str, list(row)[:8])) or "no columns"
        raise LabError(f"{where}: column {column!r} is missing (this row has: {have})")
    v = row[column]
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    if v is None:
        kind = "null"
    elif isinstance(v, float) and v != v:
        kind = "null (NaN)"  # pandas reads a null in a parquet string column as NaN
    elif isinstance(v, bool) or type(v).__name__ == "bool_":
        kind = f"a boolean ({v})"
    elif isinstance(v, dict):
        kind = "an object"
    elif isinstance(v, (list, tuple)) or hasattr(v, "tolist") and getattr(v, "ndim", 0):
        kind = "a list"
    elif isinstance(v, (int, float)) or hasattr(v, "dtype"):
        kind = f"a number ({str(v)[:40]})"
    else:
        kind = f"a {type(v).__name__}"
    raise LabError(f"{where}: column {column!r} is {kind}, not text")


def _csv_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    """("line N", row) per record, N the line the record starts on. The stdlib csv reader, not
    pandas: pandas fills a short row's missing cells with "" (hiding a missing text cell) and
    cannot say on which line a record with a quoted newline starts."""
    import csv

    old = csv.field_size_limit(2**31 - 1)  # pandas has no cell limit; csv's default is 131,072 chars
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            reader = csv.reader(f)
            header, out, prev = None, [], 0
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec:  # a blank line
                    continue
                if header is None:
                    header = rec
                    continue
                if len(rec) > len(header):
                    raise LabError(f"--in {path} line {start}: {len(rec)} fields, the header has {len(header)}")
                out.append((f"line {start}", dict(zip(header, rec))))
    finally:
        csv.field_size_limit(old)
    if header is None:
        raise LabError(f"--in {path}: cannot read it as csv (no header line)")
    return out


@dataclass
class Scanner:
    check: str
    detector: str
    threshold: float
    one: Callable[[Any], dict[str, Any]]  # text -> {score, flagged, (entities, redacted)}


def scanner(check: str, detector: str | None = None) -> Scanner:
    """The check's detector, loaded and warmed up (so no row pays the load)."""
    names = detector_names(check)
    name = detector or DEFAULT_DETECTOR[check]
    if name not in names:
        raise LabError(f"--detector {name!r} is not a {check} detector (valid: {', '.join(names)})")
    if check == "pii":
        from llmarch_lab.labs.guardrails import pii

        cfg = pii.configs()[name]

        def one_pii(text):
            ents = pii.detect(text, cfg)
            red = pii.anonymize(text, cfg, operator="replace", spans=ents)
            score = max((e["score"] for e in ents), default=0.0)
            return {"score": float(score), "flagged": bool(ents), "entities": ents, "redacted": red.text}

        one_pii("warm-up: John Smith, john@example.com")
        return Scanner(check, name, cfg.threshold, one_pii)
    if check == "injection":
        from llmarch_lab.labs.guardrails import injection

        det = injection.build(name)
    else:
        from llmarch_lab.labs.guardrails import toxicity

        det = toxicity.build(name)
    det.warmup()

    def one(text):
        s = float(det.score([text])[0])
        return {"score": s, "flagged": bool(s >= det.threshold)}

    return Scanner(check, name, float(det.threshold), one)


def _jsonable(v):
    """json_safe's default for what JSON has no type for (numpy values it converts itself)."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)


def scan_file(check: str, in_path: Path, out_path: Path, detector: str | None = None,
              text_column: str = "text", progress: bool = True) -> dict[str, Any]:
    """Scan every row of in_path into out_path (JSONL); returns a summary {rows, flagged, p50/p95 ms}."""
    from tqdm.auto import tqdm

    from llmarch_lab.common import stats

    if check not in CHECKS:
        raise LabError(f"--check {check!r}: valid are {', '.join(CHECKS)}")
    in_path = Path(in_path)
    out_path = check_output(out_path, {"--in": in_path})
    rows = read_rows(in_path, text_column)
    if detector is not None:  # an unknown name fails before any model loads
        names = detector_names(check)
        if detector not in names:
            raise LabError(f"--detector {detector!r} is not a {check} detector (valid: {', '.join(names)})")
    sc = scanner(check, detector)
    lat, flagged = [], 0
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in tqdm(rows, desc=f"{check} scan ({sc.detector})", unit="row", disable=not progress):
            t0 = time.perf_counter()
            verdict = sc.one(row[text_column])  # a str: read_rows checked every row
            ms = (time.perf_counter() - t0) * 1000
            lat.append(ms)
            flagged += bool(verdict["flagged"])
            # valid JSON: a NaN or infinity (in the row or the verdict) is written as null
            fh.write(dumps_json({**row, **verdict, "latency_ms": round(ms, 3)}, ensure_ascii=False,
                                default=_jsonable) + "\n")
    summary = {"rows": len(rows), "flagged": flagged, "detector": sc.detector, "threshold": sc.threshold}
    if lat:
        summary.update(stats.percentiles(lat, "latency_ms"))
    return summary
