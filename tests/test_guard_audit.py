"""`llmarch-lab guard verify | repair` on real audit logs (written by AuditLog) after every kind of
edit: each gives its own exit code and one line naming the file and the line. In-process, tiny
logs: the whole file runs in well under a second."""

from __future__ import annotations

import json
import random

import pytest

from llmarch_lab.cli.main import main
from llmarch_lab.labs.guardrails import audit

N = 5


def _log(path, n=N, **kw) -> audit.AuditLog:
    log = audit.AuditLog(path, fsync=False, **kw)
    for i in range(n):
        log.append({"request_id": f"r{i}", "stage": "input", "action": "block" if i == 2 else "allow",
                    "text": f"message {i}", "ts": f"2024-01-01T00:00:0{i}+00:00"})
    return log


def _lines(p) -> list[bytes]:
    return p.read_bytes().split(b"\n")[:-1]


def _write(p, lines: list[bytes]) -> None:
    p.write_bytes(b"".join(ln + b"\n" for ln in lines))


def _insert(p):  # a copy of line 2 inserted as line 3
    ls = _lines(p)
    _write(p, ls[:2] + [ls[1]] + ls[2:])


def _delete(p):
    ls = _lines(p)
    _write(p, ls[:1] + ls[2:])


def _reorder(p):
    ls = _lines(p)
    ls[1], ls[2] = ls[2], ls[1]
    _write(p, ls)


def _change(p):
    ls = _lines(p)
    assert b'"action":"block"' in ls[2]
    ls[2] = ls[2].replace(b'"action":"block"', b'"action":"allow"')
    _write(p, ls)


def _duplicate_key(p):  # json.loads keeps the last "action", so the hash still matches
    ls = _lines(p)
    ls[2] = ls[2].replace(b'{"action":"block"', b'{"action":"allow","action":"block"')
    assert json.loads(ls[2])["action"] == "block"
    _write(p, ls)


def _whitespace(p):  # the same record to json.loads, other bytes
    ls = _lines(p)
    ls[2] = ls[2].replace(b'"action":"block",', b'"action": "block", ')
    assert json.loads(ls[2]) == json.loads(_lines(p)[2])
    _write(p, ls)


def _truncate(p):  # the last two records cut off: the chain that is left is intact
    _write(p, _lines(p)[:-2])


def _torn(p):
    with open(p, "ab") as f:
        f.write(b'{"action":"allow","hash":"ab')


def _random(p):
    p.write_bytes(random.Random(29).randbytes(512))


def _empty(p):
    p.write_bytes(b"")


ANCHOR = ["--expect-count", str(N), "--expect-head", "{head}"]

# (edit, extra args, exit code, the line named (None: no line), a word of the message)
CASES = [
    ("insert", [], 1, 3, "tampered"),
    ("delete", [], 1, 2, "tampered"),
    ("reorder", [], 1, 2, "tampered"),
    ("change", [], 1, 3, "hash mismatch"),
    ("duplicate_key", [], 1, 3, 'duplicate key "action"'),
    ("whitespace", [], 1, 3, "not canonical"),
    ("truncate", [], 0, None, "chain intact"),  # missed without an anchor ...
    ("truncate", ANCHOR[:2], 1, N - 2, "--expect-count is 5"),  # ... caught with one
    ("truncate", ANCHOR[2:], 1, N - 2, "--expect-head"),
    ("truncate", ANCHOR, 1, N - 2, "truncated"),
    ("torn", [], 3, N + 1, "llmarch-lab guard repair"),
    ("random", [], 4, 1, "not an audit log"),
    ("empty", [], 4, None, "not an audit log"),
]


@pytest.mark.parametrize("edit, extra, code, line, word", CASES,
                         ids=["".join([c[0], *(a for a in c[1] if a.startswith("--"))]) for c in CASES])
def test_every_edit_has_its_exit_code_and_line(tmp_path, capsys, edit, extra, code, line, word):
    p = tmp_path / "audit.jsonl"
    head = _log(p).head()
    assert main(["guard", "verify", str(p)]) == 0
    assert f"--expect-head {head}" in capsys.readouterr().out  # the anchor to keep elsewhere
    globals()[f"_{edit}"](p)
    rc = main(["guard", "verify", str(p), *[a.format(head=head) for a in extra]])
    out = capsys.readouterr().out.splitlines()
    assert rc == code and len(out) == 1, (rc, out)
    assert f"{p}: " in out[0] and word in out[0], out[0]
    if line is None:
        assert " line " not in out[0]
    else:
        assert f": line {line}: " in out[0], out[0]


def test_a_log_with_its_anchor_and_more_records_still_verifies(tmp_path, capsys):
    p = tmp_path / "audit.jsonl"
    log = _log(p)
    head = log.head()
    log.append({"text": "later"})
    assert main(["guard", "verify", str(p), "--expect-count", str(N), "--expect-head", head]) == 0
    assert "6 records, chain intact" in capsys.readouterr().out
    # both flags: the head must be at line N exactly
    assert main(["guard", "verify", str(p), "--expect-count", "4", "--expect-head", head]) == 1
    assert "line 5: the --expect-head record is line 5, not line 4" in capsys.readouterr().out
    assert main(["guard", "verify", str(p), "--expect-head", "xyz"]) == 2
    assert "--expect-head" in capsys.readouterr().err


def test_repair_moves_the_torn_line_then_verify_is_intact(tmp_path, capsys):
    p = tmp_path / "audit.jsonl"
    log = _log(p)
    good = p.read_bytes()
    _torn(p)
    assert main(["guard", "repair", str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"repaired: {p}: moved the torn line 6 (28 bytes) to "), out
    side = next(tmp_path.glob("audit.jsonl.torn-*"))
    assert side.read_bytes() == b'{"action":"allow","hash":"ab' and p.read_bytes() == good
    assert main(["guard", "verify", str(p)]) == 0 and f"{N} records, chain intact" in capsys.readouterr().out
    log.append({"text": "after repair"})
    assert main(["guard", "verify", str(p)]) == 0
    assert main(["guard", "repair", str(p)]) == 0 and "nothing to repair" in capsys.readouterr().out


@pytest.mark.parametrize("edit, code", [("change", 1), ("random", 4)])
def test_repair_refuses_to_touch_a_tampered_log(tmp_path, capsys, edit, code):
    p = tmp_path / "audit.jsonl"
    _log(p)
    globals()[f"_{edit}"](p)
    _torn(p)
    before = p.read_bytes()
    assert main(["guard", "repair", str(p)]) == code
    out = capsys.readouterr().out
    assert out.startswith("not repaired: ") and str(p) in out and "never touches a tampered log" in out
    assert p.read_bytes() == before and not list(tmp_path.glob("*.torn-*"))


def test_missing_file_or_folder_is_exit_2(tmp_path, capsys):
    for cmd in ("verify", "repair"):
        assert main(["guard", cmd, str(tmp_path / "none.jsonl")]) == 2
        assert main(["guard", cmd, str(tmp_path)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and all(e.startswith("error: ") and str(tmp_path) in e for e in err)


def test_a_keyed_log_verifies_only_with_its_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUDIT_T29_KEY", "k1")
    p = tmp_path / "audit.jsonl"
    head = _log(p, key_env="AUDIT_T29_KEY").head()
    assert main(["guard", "verify", str(p), "--key-env", "AUDIT_T29_KEY", "--expect-count", str(N),
                 "--expect-head", head]) == 0
    assert "chain intact" in capsys.readouterr().out
    assert main(["guard", "verify", str(p)]) == 1  # without the key no hash matches
    out = capsys.readouterr().out
    assert "line 1: hash mismatch" in out and "--key-env" in out
    _torn(p)
    assert main(["guard", "repair", str(p), "--key-env", "AUDIT_T29_KEY"]) == 0
    assert main(["guard", "verify", str(p), "--key-env", "AUDIT_T29_KEY"]) == 0
    monkeypatch.delenv("AUDIT_T29_KEY")
    assert main(["guard", "verify", str(p), "--key-env", "AUDIT_T29_KEY"]) == 2
    assert "AUDIT_T29_KEY is not set" in capsys.readouterr().err
