"""Verify and repair a guard audit log (audit.py writes it): the exact bytes of every line, its
hash, its place in the chain and, given an anchor, the tail.

    rep = verify("audit.jsonl")                           # .status, .ok, .n_records, .bad_line, .reason, .head
    rep = verify(path, expect_head=H, expect_count=N)     # also catches records cut off the end
    print(rep.line(path)); sys.exit(rep.exit_code)        # one line naming the file and the line
    side = repair("audit.jsonl")                          # torn last line -> side file (LabError if tampered)

A line is valid only when it is byte for byte the canonical JSON of its record (sorted keys, no
spaces, no duplicate key): json.loads would read `{"action":"allow","action":"block",...}` or a
line with extra spaces as the same record, so the chain would not see that edit; here it does.
Its `hash` must be the SHA-256 (HMAC-SHA-256 with a key) of the record without `hash`, its `seq`
its line number and its `prev` the previous line's hash (GENESIS on line 1).

A chain alone cannot show that lines were cut off its end. An anchor can: keep the count and head
that an intact verify prints (`--expect-count N --expect-head HASH`) somewhere else. Later, the
record with that hash must still be in the log (at line N when both are given) and the log must
hold at least N records; the log may have grown since.

Exit codes (`llmarch-lab guard verify`, `llmarch-lab guard repair`, and
`python -m llmarch_lab.labs.guardrails.audit verify`):
    0  intact (repair: the torn line was moved aside, or there was nothing to repair)
    1  tampered: a line edited, inserted, deleted or reordered, a non-canonical line, a duplicate
       key, or the anchor does not match (the tail was cut off)
    2  usage error (a bad flag, an unset key variable), or the file cannot be opened
    3  torn: only the last line is incomplete (a crash mid-write); fix: llmarch-lab guard repair FILE
    4  not an audit log: an empty file, binary or random bytes, lines that are not audit records
"""

from __future__ import annotations

import codecs
import fcntl
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llmarch_lab import LabError

GENESIS = "0" * 64
EXIT_CODES = {"intact": 0, "tampered": 1, "torn": 3, "not-a-log": 4}  # 2: usage, or cannot open
_LABELS = {"intact": "ok", "tampered": "tampered", "torn": "torn", "not-a-log": "not an audit log"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------------ hashing (audit.py writes with these)


def canonical(obj: dict) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def digest(body: dict, key: bytes | None) -> str:
    data = canonical(body)
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def load_key(key_env: str) -> bytes | None:
    """The HMAC key from the environment variable NAMED key_env (None when no name is given)."""
    if not key_env:
        return None
    val = os.environ.get(key_env, "")
    if not val:
        raise LabError(f"audit: HMAC key variable {key_env} is not set")
    return val.encode()


# ------------------------------------------------------------------ strict reading of one line


class _Edited(ValueError):
    """A line json.loads would accept but the log never writes (duplicate key, NaN)."""


def _unique_pairs(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Edited(f'duplicate key "{k}"')
        out[k] = v
    return out


def _no_constant(name: str):
    raise _Edited(f"{name} is not JSON")


def _strict_load(raw: bytes):
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_pairs, parse_constant=_no_constant)


def _is_record(obj) -> bool:
    return isinstance(obj, dict) and {"seq", "prev", "hash"} <= obj.keys()


def _check_line(raw: bytes, i: int, prev: str, key: bytes | None) -> tuple[dict | None, str]:
    """(the record, "") when line i is valid and follows `prev`; (None, why) when it is not."""
    try:
        rec = _strict_load(raw)
    except _Edited as e:
        return None, f"{e}: the line was edited"
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None, "not valid JSON"
    if not _is_record(rec):
        return None, "not an audit record (no seq/prev/hash)"
    if canonical(rec) != raw:
        return None, "not canonical JSON (spaces, key order or escapes differ from what the log writes): the line was edited"
    if type(rec["seq"]) is not int or not isinstance(rec["prev"], str) or not isinstance(rec["hash"], str):
        return None, "seq, prev or hash has the wrong type: the line was edited"
    own = digest({k: v for k, v in rec.items() if k != "hash"}, key)
    if not hmac.compare_digest(rec["hash"].encode(), own.encode()):
        hint = " (or the log is keyed: pass --key-env NAME)" if i == 1 and key is None else ""
        return None, f"hash mismatch: the record was edited{hint}"
    if rec["seq"] != i:
        return None, f"seq {rec['seq']} at line {i}: a line was deleted, inserted or reordered"
    if rec["prev"] != prev:
        return None, "prev does not match the previous record's hash: lines deleted, inserted or reordered"
    return rec, ""


def _any_record(lines: list[bytes]) -> bool:
    """Does any line read as an audit record? If none does, the file is not an audit log at all."""
    for raw in lines:
        try:
            if _is_record(json.loads(raw)):
                return True
        except ValueError:
            continue
    return False


def _starts_a_record(tail: bytes) -> bool:
    """A torn write is a prefix of a canonical line: `{"`, then UTF-8 (maybe cut mid-character)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(tail, final=False)
    except UnicodeDecodeError:
        return False
    return tail.startswith(b'{"')


# ------------------------------------------------------------------ verify


@dataclass
class VerifyReport:
    status: str  # intact | tampered | torn | not-a-log (EXIT_CODES)
    n_records: int  # complete, valid records before the first bad line
    bad_line: int | None = None  # 1-based
    reason: str = ""
    head: str = GENESIS  # hash of the last valid record

    @property
    def ok(self) -> bool:
        return self.status == "intact"

    @property
    def torn(self) -> bool:
        return self.status == "torn"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def line(self, path) -> str:
        if self.ok:
            return (f"ok: {path}: {self.n_records} records, chain intact "
                    f"(anchor: --expect-count {self.n_records} --expect-head {self.head})")
        where = f"line {self.bad_line}: " if self.bad_line else ""
        fix = f"; fix: llmarch-lab guard repair {path}" if self.torn else ""
        return f"{_LABELS[self.status]}: {path}: {where}{self.reason}{fix}"


def check(data: bytes, key: bytes | None = None, expect_head: str = "", expect_count: int = 0) -> VerifyReport:
    """Verify a log's bytes; see the module docstring for what each status means."""
    if not data:
        return VerifyReport("not-a-log", 0, None, "empty file (0 bytes), no records")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    prev, n, anchor_line = GENESIS, 0, None
    for i, raw in enumerate(lines, start=1):
        rec, bad = _check_line(raw, i, prev, key)
        if bad:
            status = "tampered" if n or _any_record(lines + [tail]) else "not-a-log"
            return VerifyReport(status, n, i, bad, prev)
        prev, n = rec["hash"], i
        if expect_head and prev == expect_head:
            anchor_line = i
    bad_line, bad = _anchor(n, anchor_line, expect_head, expect_count)
    if bad:
        return VerifyReport("tampered", n, bad_line, bad, prev)
    if tail and _starts_a_record(tail):
        return VerifyReport("torn", n, n + 1, f"torn last line ({len(tail)} bytes, no newline): an incomplete write",
                            prev)
    if tail:
        return VerifyReport("tampered" if n else "not-a-log", n, n + 1,
                            f"{len(tail)} bytes after the last newline that do not start a record", prev)
    return VerifyReport("intact", n, None, "", prev)


def _anchor(n: int, at: int | None, expect_head: str, expect_count: int) -> tuple[int | None, str]:
    last = n or None
    if expect_head and at is None:
        return last, (f"no record has the --expect-head hash {expect_head[:16]}...: records were cut off "
                      "the end (truncated) or rewritten")
    if expect_head and expect_count and at != expect_count:
        return at, f"the --expect-head record is line {at}, not line {expect_count} (--expect-count)"
    if expect_count > n:
        return last, f"the log ends at line {n} but --expect-count is {expect_count}: records were cut off the end (truncated)"
    return None, ""


def verify(path, key_env: str = "", expect_head: str = "", expect_count: int | None = None) -> VerifyReport:
    """Check every line's bytes, hash, seq and link to the line before, then the anchor if given.
    OSError (missing, unreadable file) propagates: the CLI turns it into exit status 2."""
    expect_head = (expect_head or "").strip().lower()
    if expect_head and not _HEX64.fullmatch(expect_head):
        raise LabError(f"--expect-head: expected the 64 hex digits an intact verify prints, got {expect_head!r}")
    if expect_count is not None and expect_count < 1:
        raise LabError(f"--expect-count: expected a record count of 1 or more, got {expect_count}")
    key = load_key(key_env)
    return check(Path(path).read_bytes(), key, expect_head, expect_count or 0)


# ------------------------------------------------------------------ repair


@dataclass
class RepairReport:
    before: VerifyReport  # the log as it was found
    side: Path | None = None  # where the torn bytes went
    moved: int = 0  # how many bytes

    @property
    def exit_code(self) -> int:
        return 0 if self.before.status in ("intact", "torn") else self.before.exit_code

    def line(self, path) -> str:
        b = self.before
        if b.ok:
            return f"nothing to repair: {path}: {b.n_records} records, chain intact"
        if b.torn:
            return (f"repaired: {path}: moved the torn line {b.bad_line} ({self.moved} bytes) to {self.side}; "
                    f"{b.n_records} records, chain intact")
        return (f"not repaired: {b.line(path)} (repair only moves a torn last line aside; it never "
                "touches a tampered log)")


def repair_log(path, key_env: str = "") -> RepairReport:
    """Under the writers' lock: verify the log; when only its last line is torn, copy those bytes to
    PATH.torn-<UTC time> (fsync'd) and cut them off the log. Any other finding changes nothing."""
    key = load_key(key_env)
    path = Path(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = path.read_bytes()
        rep = check(data, key)
        if not rep.torn:
            return RepairReport(rep)
        cut = data.rfind(b"\n") + 1
        side = path.with_name(f"{path.name}.torn-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}")
        with open(side, "xb") as f:
            f.write(data[cut:])
            f.flush()
            os.fsync(f.fileno())
        os.ftruncate(fd, cut)
        os.fsync(fd)
        return RepairReport(rep, side, len(data) - cut)
    finally:
        os.close(fd)  # closing releases the flock


def repair(path, key_env: str = "") -> Path | None:
    """Move a torn last line to a side file and return it; None when the log was intact.
    LabError, and nothing touched, when the log is tampered or not an audit log."""
    rep = repair_log(path, key_env)
    if rep.exit_code:
        raise LabError(rep.line(path))
    return rep.side
