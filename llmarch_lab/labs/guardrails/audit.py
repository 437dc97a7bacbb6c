"""A tamper-evident audit log of guard decisions: JSONL, one record a line, hash-chained.

    log = AuditLog("audit.jsonl")                  # redactor: the regex fallback below
    log = AuditLog(path, redactor=pii.redact)      # or the PII module's Presidio redaction
    log.append(decision.to_record())               # Guard(audit=log) does this for every decision
    report = verify("audit.jsonl")                 # .ok, .n_records, .bad_line, .reason, .torn

    python -m llmarch_lab.labs.guardrails.audit verify FILE   # one line; exit 0 ok, 1 bad, 2 unreadable

Each line is canonical JSON (sorted keys, no spaces) with these fields added to the record:
`seq` (its 1-based line number), `ts` (UTC, when not given), `prev` (the previous record's
`hash`; GENESIS for the first) and `hash` = SHA-256 of the canonical JSON of the record without
`hash` (HMAC-SHA-256 when a key is named, see below). So editing a line breaks its own hash,
deleting or reordering lines breaks `seq` and `prev`, and verify names the first bad line.

Before writing, every string field named in `redact_fields` (default: text) goes through the
redactor, so the original PII never reaches the disk.

Crash safety: a record is one os.write() of the whole line (newline included) on an O_APPEND
descriptor, then fsync; appends from several threads or processes are serialised by a lock and an
flock on the file, and each append re-reads the last line under that lock, so the chain holds
across writers. A process killed mid-write leaves at most a torn last line (no trailing newline
or not JSON): verify reports it (`torn=True`), and append refuses to chain onto it until
`repair(path)` moves the torn bytes to a side file.

Limits: a plain hash chain shows accidental or naive tampering; someone who can rewrite the file
can recompute every hash. Name an HMAC key (`key_env="AUDIT_KEY"`, the NAME of an environment
variable, never the key) so that only key holders can produce valid records, and keep `head()`
(the last hash) somewhere else to detect a truncated tail, which a chain alone cannot show.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import hmac
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from llmarch_lab import LabError

GENESIS = "0" * 64
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


# ------------------------------------------------------------------ hashing


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _digest(body: dict, key: bytes | None) -> str:
    data = _canonical(body)
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def _key(key_env: str) -> bytes | None:
    if not key_env:
        return None
    val = os.environ.get(key_env, "")
    if not val:
        raise LabError(f"audit: HMAC key variable {key_env} is not set")
    return val.encode()


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
        self._key = _key(key_env)
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
                rec["hash"] = _digest(rec, self._key)
                line = _canonical(rec) + b"\n"
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
                           f"`python -m llmarch_lab.labs.guardrails.audit verify {path}` and repair it "
                           "before appending")
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


# ------------------------------------------------------------------ verify


@dataclass
class VerifyReport:
    ok: bool
    n_records: int  # complete, valid records before the first bad line
    bad_line: int | None = None  # 1-based
    reason: str = ""
    torn: bool = False
    head: str = GENESIS  # hash of the last valid record

    def line(self, path) -> str:
        if self.ok:
            return f"ok: {path}: {self.n_records} records, chain intact (head {self.head[:16]})"
        return f"tampered: {path}: line {self.bad_line}: {self.reason}"


def verify(path, key_env: str = "") -> VerifyReport:
    """Check every line's hash, seq and link to the previous line; the first bad line is named.
    OSError (missing, unreadable file) propagates: the CLI turns it into exit status 2."""
    key = _key(key_env)
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    prev, n = GENESIS, 0
    for i, raw in enumerate(lines, start=1):
        bad = _check_line(raw, i, prev, key)
        if bad:
            return VerifyReport(False, n, i, bad, False, prev)
        prev = json.loads(raw)["hash"]
        n += 1
    if tail:
        return VerifyReport(False, n, len(lines) + 1, f"torn last line ({len(tail)} bytes, no newline): an "
                            "incomplete write; repair() moves it aside", True, prev)
    return VerifyReport(True, n, None, "", False, prev)


def _check_line(raw: bytes, i: int, prev: str, key: bytes | None) -> str:
    try:
        rec = json.loads(raw)
    except ValueError:
        return "not valid JSON"
    if not isinstance(rec, dict) or not {"seq", "prev", "hash"} <= rec.keys():
        return "not an audit record (no seq/prev/hash)"
    body = {k: v for k, v in rec.items() if k != "hash"}
    try:
        own = _digest(body, key)
    except (TypeError, ValueError):
        return "record cannot be re-hashed"
    if not hmac.compare_digest(str(rec["hash"]), own):
        return "hash mismatch: the record was edited"
    if rec["seq"] != i:
        return f"seq {rec['seq']} at line {i}: a line was deleted, inserted or reordered"
    if rec["prev"] != prev:
        return "prev does not match the previous record's hash: lines deleted, inserted or reordered"
    return ""


def repair(path) -> Path | None:
    """Move a torn last line (bytes after the last newline) to PATH.torn-<UTC time>; returns that
    file, or None when there was nothing to move. Only a torn tail is touched, never a record."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            return None
        side = path.with_name(f"{path.name}.torn-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}")
        side.write_bytes(data[cut:])
        os.ftruncate(fd, cut)
        os.fsync(fd)
        return side
    finally:
        os.close(fd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.audit",
                                 description="Verify a guard audit log's hash chain.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the chain; exit 0 ok, 1 tampered or torn, 2 unreadable")
    v.add_argument("file")
    v.add_argument("--key-env", default="", help="NAME of the environment variable holding the HMAC key")
    a = ap.parse_args(argv)
    try:
        rep = verify(a.file, a.key_env)
    except (OSError, LabError) as e:
        print(f"unreadable: {a.file}: {e.strerror if isinstance(e, OSError) else e}")
        return 2
    print(rep.line(a.file))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
