"""A tamper-evident audit log of guard decisions: JSONL, one record a line, hash-chained.

    log = AuditLog("audit.jsonl")                  # redactor: the regex fallback below
    log = AuditLog(path, redactor=pii.redact)      # or the PII module's Presidio redaction
    log.append(decision.to_record())               # Guard(audit=log) does this for every decision
    report = verify("audit.jsonl")                 # .status, .ok, .n_records, .bad_line, .reason, .head
    log.head()                                     # the last hash: keep it elsewhere (an anchor)

    llmarch-lab guard verify FILE [--expect-count N --expect-head HASH]   # one line, exit code below
    llmarch-lab guard repair FILE                  # moves a torn last line to a side file

Exit codes of verify (audit_verify.py has the details): 0 intact; 1 tampered (a line edited,
inserted, deleted or reordered, non-canonical, a duplicate key, or the anchor does not match:
truncated); 2 usage error or the file cannot be opened; 3 torn last line only (fix:
`llmarch-lab guard repair FILE`); 4 not an audit log (empty, binary, not JSON lines of records).

Each line is canonical JSON (sorted keys, no spaces) with these fields added to the record:
`seq` (its 1-based line number), `ts` (UTC, when not given), `prev` (the previous record's
`hash`; GENESIS for the first) and `hash` = SHA-256 of the canonical JSON of the record without
`hash` (HMAC-SHA-256 when a key is named, see below). So editing a line breaks its own hash,
deleting or reordering lines breaks `seq` and `prev`, and verify names the first bad line. Verify
also requires each line to be byte for byte the canonical JSON of its record, so added spaces or a
duplicate key (which json.loads would silently resolve) count as edits.

Before writing, every string field named in `redact_fields` (default: text) goes through the
redactor, so the original PII never reaches the disk.

Crash safety: a record is one os.write() of the whole line (newline included) on an O_APPEND
descriptor, then fsync; appends from several threads or processes are serialised by a lock and an
flock on the file, and each append re-reads the last line under that lock, so the chain holds
across writers. A process killed mid-write leaves at most a torn last line (no trailing newline
or not JSON): verify reports it (`torn=True`, exit 3), and append refuses to chain onto it until
`repair(path)` (`llmarch-lab guard repair FILE`) moves the torn bytes to a side file.

Limits: a plain hash chain shows accidental or naive tampering; someone who can rewrite the file
can recompute every hash. Name an HMAC key (`key_env="AUDIT_KEY"`, the NAME of an environment
variable, never the key) so that only key holders can produce valid records, and keep `head()`
(the last hash) and the record count somewhere else to detect a truncated tail, which a chain
alone cannot show: `verify(path, expect_head=..., expect_count=...)`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.audit_verify import (  # noqa: F401 - audit.verify/repair stay the API
    GENESIS,
    VerifyReport,
    canonical,
    digest,
    load_key,
    repair,
    verify,
)

_TAIL_BLOCK = 65536


# ------------------------------------------------------------------ the fallback redactor

# A conservative regex redactor, the fallback when the PII module's Presidio redaction is not
# passed in: it needs no model, so the audit log never depends on spaCy being loadable. It
# redacts more than Presidio would (any 7+ digit run that is not an ISO date counts as a phone or
# card number) and knows only emails, phone numbers, card numbers and US SSNs; names, addresses
# and the rest need the real PII module.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
_NUMBER = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{5,}\d(?!\w)")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def regex_redact(text: str) -> str:
    """Emails -> <EMAIL>, SSNs -> <SSN>, 13-19 digit runs -> <CARD>, other 7+ digit runs -> <PHONE>."""
    text = _EMAIL.sub("<EMAIL>", text)
    text = _SSN.sub("<SSN>", text)

    def number(m: re.Match) -> str:
        s = m.group(0)
        if _DATE.fullmatch(s.strip()):
            return s
        n = sum(ch.isdigit() for ch in s)
        if n >= 13 and n <= 19:
            return "<CARD>"
        return "<PHONE>" if n >= 7 else s

    return _NUMBER.sub(number, text)


# ------------------------------------------------------------------ records


def _jsonable(x):
    """Records come from dataclasses and numpy: make floats/ints/containers plain JSON."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return x if x == x and x not in (float("inf"), float("-inf")) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if hasattr(x, "item"):  # numpy scalars
        return _jsonable(x.item())
    return str(x)


# ------------------------------------------------------------------ the log


class AuditLog:
    """Append-only, hash-chained JSONL at `path`. `append(record)` returns the written record."""

    def __init__(self, path, redactor: Callable[[str], str] | None = regex_redact,
                 redact_fields: tuple[str, ...] = ("text",), key_env: str = "", fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redactor = redactor
        self.redact_fields = tuple(redact_fields)
        self.key_env = key_env
        self._key = load_key(key_env)
        self.fsync = fsync
        self._lock = threading.Lock()

    def append(self, record: dict) -> dict:
        rec = _jsonable(dict(record))
        for f in ("seq", "prev", "hash"):
            rec.pop(f, None)
        if self.redactor is not None:
            for f in self.redact_fields:
                if isinstance(rec.get(f), str):
                    rec[f] = self.redactor(rec[f])
        rec.setdefault("ts", datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        if not rec["ts"]:
            rec["ts"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                seq, prev = _tail_state(fd, self.path)
                rec["seq"], rec["prev"] = seq + 1, prev
                rec["hash"] = digest(rec, self._key)
                line = canonical(rec) + b"\n"
                n = os.write(fd, line)  # one write of the whole line on O_APPEND
                if n != len(line):
                    raise LabError(f"audit log {self.path}: short write ({n} of {len(line)} bytes)")
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the flock
        return rec

    def head(self) -> str:
        """The last record's hash (GENESIS for an empty log): keep it elsewhere to catch truncation."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            return _tail_state(fd, self.path)[1]
        finally:
            os.close(fd)


def _tail_state(fd: int, path: Path) -> tuple[int, str]:
    """(seq, hash) of the last complete record, read backwards from the end of the file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    start = max(0, size - _TAIL_BLOCK)
    while True:
        buf = os.pread(fd, size - start, start)
        if not buf.endswith(b"\n"):
            raise LabError(f"audit log {path}: the last line is torn (a crash mid-write?); run "
                           f"`llmarch-lab guard repair {path}` before appending")
        body = buf[:-1]
        nl = body.rfind(b"\n")
        if nl >= 0 or start == 0:
            last = body[nl + 1:]
            break
        start = max(0, start - _TAIL_BLOCK)
    try:
        d = json.loads(last)
        return int(d["seq"]), str(d["hash"])
    except (ValueError, KeyError, TypeError):
        raise LabError(f"audit log {path}: the last line is not an audit record; verify the file") from None


# ------------------------------------------------------------------ the module's command


def main(argv=None) -> int:
    """`python -m llmarch_lab.labs.guardrails.audit verify FILE`, the same check and exit codes as
    `llmarch-lab guard verify` (which also repairs: `llmarch-lab guard repair FILE`)."""
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.audit",
                                 description="Verify a guard audit log's hash chain.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the log; exit 0 intact, 1 tampered, 2 usage or cannot open, "
                                      "3 torn last line, 4 not an audit log")
    v.add_argument("file")
    v.add_argument("--key-env", default="", help="NAME of the environment variable holding the HMAC key")
    v.add_argument("--expect-head", default="", metavar="HASH", help="an earlier head: must still be in the chain")
    v.add_argument("--expect-count", type=int, default=None, metavar="N", help="the log must hold at least N records")
    a = ap.parse_args(argv)
    try:
        rep = verify(a.file, a.key_env, a.expect_head, a.expect_count)
    except (OSError, LabError) as e:
        print(f"unreadable: {a.file}: {e.strerror if isinstance(e, OSError) else e}")
        return 2
    print(rep.line(a.file))
    return rep.exit_code

if __name__ == "__main__":
    sys.exit(main())
