"""Every command under arbitrary input (issue 29, class 4): a hypothesis fuzz over the command
lines a user can type (files of any content and kind, output paths, flag values, URIs, environment
variables), in-process through the CLI's entry point against a real (missing) sqlite store. For
every example: no traceback and no "unexpected" error, at most one error line, a bounded time, and
on an error nothing written."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmarch_lab import cli
from llmarch_lab.common import env

EXAMPLES = int(os.environ.get("LLMARCH_FUZZ_EXAMPLES", "250"))

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12))
_row = st.dictionaries(st.sampled_from(["text", "text_a", "text_b", "label", "id", "seq", "hash", "prev", "action"]),
                       st.one_of(_scalar, st.lists(_scalar, max_size=2)), max_size=4)
_word = st.one_of(st.sampled_from(["0", "-1", "1", "65536", "1e309", "nan", "", " ", "quickstart", "rag",
                                   "x" * 300, "a\x1bb", "../..", "md", "csv", "rich", "ray", "local"]),
                  st.text(max_size=20))


def _content(draw) -> bytes:
    kind = draw(st.sampled_from(["text", "binary", "jsonl", "yaml", "empty"]))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "jsonl":
        import json

        rows = draw(st.lists(_row, max_size=4))
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if kind == "yaml":
        import yaml

        doc = draw(st.one_of(_scalar, st.dictionaries(st.sampled_from(["runs", "suite", "system", "slos", "workload",
                                                                      "name", "notebook", "params"]),
                                                     st.one_of(_scalar, st.lists(_row, max_size=2)), max_size=4)))
        return yaml.safe_dump(doc).encode()
    return b""


@st.composite
def _file(draw, tmp: Path, name: str) -> str:
    """A path a user might give as an input file: of any content, a folder, missing, special."""
    kind = draw(st.sampled_from(["file"] * 6 + ["dir", "missing", "proc", "loop", "long", "ctrl"]))
    path = tmp / (name + draw(st.sampled_from([".jsonl", ".yaml", ".csv", ".jsonl.gz", ".parquet", ""])))
    if kind == "file":
        path.write_bytes(_content(draw))
    elif kind == "dir":
        path.mkdir()
    elif kind == "proc":
        return "/proc/self/status"
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "long":
        return str(tmp / ("n" * 300))
    elif kind == "ctrl":
        return str(tmp / "a\x1b[31mb")
    return str(path)


@st.composite
def _out(draw, tmp: Path, given: str) -> str:
    """An output path: new, an existing folder, the input itself, a pipe, a device node, a link."""
    kind = draw(st.sampled_from(["new"] * 4 + ["dir", "input", "fifo", "device", "link", "noparent"]))
    out = tmp / "out.json"
    if kind == "dir":
        out.mkdir()
    elif kind == "input":
        return given
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "device":  # a copy of /dev/null's node: if a check ever fails, only this copy is replaced
        os.mknod(out, 0o666 | 0o020000, os.makedev(1, 3))
    elif kind == "link":
        out.symlink_to("/proc/self/fd/1")
    elif kind == "noparent":
        return str(tmp / "no" / "such" / "out.json")
    return str(out)


def _flags(draw, options: dict[str, st.SearchStrategy]) -> list[str]:
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True)):
        argv += [flag] if options[flag] is None else [flag, draw(options[flag])]
    return argv


@st.composite
def command(draw, tmp: Path) -> list[str]:
    name = draw(st.sampled_from(["run", "status", "report", "list", "ui", "guard scan", "guard verify", "guard repair",
                                 "cache eval", "system choose", "system report"]))
    f = draw(_file(tmp, "in"))
    if name == "run":
        return ["run", f, "--dry-run", "--quiet", *_flags(draw, {"--workers": _word, "--only": _word, "--max-runs": _word,
                                                                 "--executor": _word, "--address": _word,
                                                                 "--force": None, "--show-params": None})]
    if name == "status":
        return ["status", draw(_word), *_flags(draw, {"--watch": _word, "--all": None})]
    if name == "report":
        return ["report", draw(_word), *_flags(draw, {"--format": _word, "--lab": _word,
                                                      "--out": st.just(draw(_out(tmp, f)))})]
    if name == "list":
        return ["list", *_flags(draw, {"--no-params": None, "--metrics": None})]
    if name == "ui":
        return ["ui", "--port", draw(_word)]
    if name == "guard scan":
        return ["guard", "scan", "--check", draw(st.sampled_from(["injection", "pii", "toxicity"]) | _word),
                "--in", f, "--out", draw(_out(tmp, f)), "--detector", draw(st.just("rules") | _word), "--quiet",
                *_flags(draw, {"--text-column": _word})]
    if name == "guard verify":
        return ["guard", "verify", f, *_flags(draw, {"--expect-count": _word, "--expect-head": _word, "--key-env": _word})]
    if name == "guard repair":
        return ["guard", "repair", f]
    if name == "cache eval":  # `label` is never a valid 0/1 here: a valid file would start minutes of real work
        return ["cache", "eval", "--pairs", f, *_flags(draw, {"--out": st.just(draw(_out(tmp, f)))})]
    if name == "system choose":
        return ["system", "choose", f]
    return ["system", "report", f, "--no-verify", *_flags(draw, {"--out": st.just(str(tmp / "report"))})]


def _tree(folder: Path) -> dict[str, int]:
    out = {}
    for p in folder.rglob("*"):
        try:
            out[str(p.relative_to(folder))] = p.lstat().st_size if not p.is_dir() else -1
        except OSError:
            out[str(p)] = -2
    return out


# Not fuzzed: LLMARCH_HOME (the checkout's suites are the inputs here), MLFLOW_TRACKING_URI and
# LLMARCH_CACHE_DIR (a random relative value is a legitimate place to create a store or a cache).
USER_VARS = [v.name for v in env.VARS if v.kind != "internal"
             and v.name not in ("LLMARCH_HOME", "MLFLOW_TRACKING_URI", "LLMARCH_CACHE_DIR")]


@pytest.mark.timeout(600)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_command(tmp_path_factory, capsys, monkeypatch, data):
    tmp = tmp_path_factory.mktemp("fz")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    monkeypatch.chdir(tmp)  # a stray write into the working directory shows in the tree below
    for name in USER_VARS:
        monkeypatch.delenv(name, raising=False)
    if data.draw(st.booleans()):
        monkeypatch.setenv(data.draw(st.sampled_from(USER_VARS)),
                           data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                             max_size=30)))
    argv = data.draw(command(tmp))
    if argv[:2] == ["cache", "eval"] and Path(argv[3]).parent == tmp and os.path.isfile(argv[3]):
        pairs = Path(argv[3])
        pairs.write_bytes(pairs.read_bytes().replace(b'"label"', b'"labels"'))
    before = _tree(tmp)
    t0 = time.perf_counter()
    rc = cli.main(argv)
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "error: unexpected" not in text and "please report" not in text, (argv, text[-800:])
    errors = [ln for ln in out.err.splitlines() if ln.startswith("error:")]
    assert len(errors) <= 1 and all(len(e) < 1200 for e in errors), (argv, out.err[-800:])
    assert "\x1b[31m" not in text, argv  # a user's escape bytes never reach the terminal raw
    assert elapsed < 20, (argv, elapsed)
    if rc != 0:
        assert rc in (1, 2, 3, 4) and _tree(tmp) == before, (argv, rc, out.err[-400:])
    for special in ("/dev/null", "/dev/stdout"):  # the real ones, never replaced
        assert not Path(special).is_file() or Path(special).is_symlink(), special
