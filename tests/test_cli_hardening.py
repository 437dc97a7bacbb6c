"""The command line under bad input: one clear line, a non-zero exit, no traceback, no hang,
nothing written. One test per case of the hardening issue, plus a property-based fuzz over
suite files (hypothesis). Everything is real: the CLI's own entry point (`cli.main`, in-process
for speed; a subprocess where a real process boundary matters), real sqlite stores, a real
closed port, a real loopback server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmarch_lab import cli

ROOT = Path(__file__).resolve().parent.parent
PROBE_NB = ROOT / "tests" / "notebooks" / "probe.ipynb"


def cli_run(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc: int, err: str, *needles: str, code: int = 2) -> str:
    assert rc == code, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    """A store URI whose database does not exist yet (nothing may create it on an error)."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return tmp_path / "store"


def suite_text(params: str = "{value: 3}", notebook: str = str(PROBE_NB)) -> str:
    return f"runs:\n  - name: p\n    notebook: {notebook}\n    params: {params}\n"


# ----------------------------------------------------------------------------- the table

def test_huge_grid_refused_before_expansion(capsys, write, empty_store):
    grid = "".join(f"      k{i}: [{', '.join(str(j) for j in range(10))}]\n" for i in range(6))
    path = write("huge.yaml", f"runs:\n  - name: g\n    notebook: {PROBE_NB}\n    grid:\n{grid}")
    t0 = time.perf_counter()
    rc, _, err = cli_run(capsys, "run", str(path), "--dry-run")
    assert time.perf_counter() - t0 < 5
    one_line_error(rc, err, "huge.yaml:4:", "1,000,000 runs", "10,000", "--max-runs")
    # and the cap is a parameter
    path = write("mid.yaml", f"runs:\n  - name: g\n    notebook: {PROBE_NB}\n    grid: {{value: [1, 2, 3]}}\n")
    rc, _, err = cli_run(capsys, "run", str(path), "--dry-run", "--max-runs", "2")
    one_line_error(rc, err, "3 runs", "cap of 2")
    assert not empty_store.exists()


def test_non_utf8_suite(capsys, tmp_path, write, empty_store, monkeypatch):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(suite_text().encode() + b"# caf\xe9\n")
    rc, _, err = cli_run(capsys, "run", str(path), "--dry-run")
    one_line_error(rc, err, "latin1.yaml:5:6:", "not UTF-8", "0xe9")
    # the same file among a home's suites: `list` shows it INVALID and goes on
    home = tmp_path / "home"
    (home / "experiments").mkdir(parents=True)
    (home / "notebooks").mkdir()
    (home / "experiments" / "good.yaml").write_text(suite_text())
    (home / "experiments" / "zz_bad.yaml").write_bytes(path.read_bytes())
    monkeypatch.setenv("LLMARCH_HOME", str(home))
    rc, out, err = cli_run(capsys, "list", "--no-params")
    assert rc == 0, err
    assert "suite good" in out and "zz_bad" in out and "INVALID" in out and "not UTF-8" in out


def test_unreachable_tracking_server_fails_fast(capsys, write, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}/")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    path = write("s.yaml", suite_text())
    for args in (("run", str(path), "--dry-run"), ("report", "quickstart")):
        t0 = time.perf_counter()
        rc, _, err = cli_run(capsys, *args)
        assert time.perf_counter() - t0 < 8
        line = one_line_error(rc, err, f"http://127.0.0.1:{port}/", "MLFLOW_TRACKING_URI", "does not answer")
        assert line.endswith("refused") or line.endswith("timed out"), line  # never cut mid-word


def test_garbage_store(capsys, tmp_path, write, monkeypatch):
    db = tmp_path / "garbage.db"
    db.write_bytes(b"\x00garbage" * 1000)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    before = db.read_bytes()
    for args in (("run", str(write("s.yaml", suite_text())), "--quiet"), ("report", "x"),
                 ("run", str(write("s.yaml", suite_text())), "--dry-run")):
        rc, _, err = cli_run(capsys, *args)
        one_line_error(rc, err, str(db), "not an SQLite database")
    assert db.read_bytes() == before


def test_read_only_store(tmp_path, store, write):
    """A store that cannot be written: one line before any run starts. Run as a real process. As
    root, whom file modes do not stop, the store's folder is a read-only bind mount in a private
    mount namespace (unshare -m); otherwise plain file modes."""
    import shutil

    from llmarch_lab.store import tracking

    tracking.ensure_experiment("seed")  # a real store with its tables
    db = Path(store[len("sqlite:///"):])
    path = write("s.yaml", suite_text())
    cmd = [sys.executable, "-m", "llmarch_lab.cli", "run", str(path), "--quiet"]
    if os.geteuid() == 0:
        if not shutil.which("unshare"):
            pytest.skip("root without unshare(1): no way to make a read-only store here")
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" '
               '&& exec "$@"', str(db.parent), *cmd]
    else:
        db.chmod(0o444)
        db.parent.chmod(0o555)
    try:
        before = db.read_bytes()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if "mount" in proc.stderr and "permission denied" in proc.stderr.lower():
            pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
        one_line_error(proc.returncode, proc.stderr, store, "cannot write")
        assert db.read_bytes() == before
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)


def test_dry_run_creates_nothing(capsys, tmp_path, write, monkeypatch):
    target = tmp_path / "nonexistent-dir" / "x"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{target / 'mlflow.db'}")
    path = write("s.yaml", suite_text())
    before = tree(tmp_path)
    rc, out, err = cli_run(capsys, "run", str(path), "--dry-run")
    assert rc == 0, err
    assert "PLANNED" in out and "value=3" in out  # each run's parameters are shown
    assert tree(tmp_path) == before and not (tmp_path / "nonexistent-dir").exists()
    # report on a store that does not exist: one line, and still nothing created
    rc, _, err = cli_run(capsys, "report", "s")
    one_line_error(rc, err, "no MLflow store", "nothing has run")
    assert tree(tmp_path) == before


def test_every_only_must_exist(capsys, write, empty_store):
    path = write("two.yaml", suite_text() + f"  - name: q\n    notebook: {PROBE_NB}\n")
    rc, out, err = cli_run(capsys, "run", str(path), "--only", "p", "--only", "nosuch", "--dry-run")
    one_line_error(rc, err, "--only nosuch", "valid: p, q")
    rc, out, err = cli_run(capsys, "run", str(path), "--only", "p", "--only", "q", "--dry-run")
    assert rc == 0 and out.count("PLANNED") == 2, (out, err)


def test_bool_is_not_a_number_and_whole_floats_are_said(capsys, write, empty_store):
    rc, _, err = cli_run(capsys, "run", str(write("b.yaml", suite_text("{value: true}"))), "--dry-run")
    one_line_error(rc, err, "b.yaml:4:", "value", "boolean")
    rc, _, err = cli_run(capsys, "run", str(write("g.yaml", suite_text("{sleep_s: false}"))), "--dry-run")
    one_line_error(rc, err, "sleep_s", "boolean")
    rc, out, err = cli_run(capsys, "run", str(write("f.yaml", suite_text("{value: 8.0}"))), "--dry-run")
    assert rc == 0 and "note: " in err and "8.0 taken as the integer 8" in err and "f.yaml:4" in err
    rc, _, err = cli_run(capsys, "run", str(write("h.yaml", suite_text("{value: 8.5}"))), "--dry-run")
    one_line_error(rc, err, "h.yaml:4:", "value")


def test_duplicate_yaml_keys(capsys, write, empty_store):
    text = f"runs:\n  - name: p\n    notebook: {PROBE_NB}\n    params:\n      value: 1\n      value: 2\n"
    rc, _, err = cli_run(capsys, "run", str(write("d.yaml", text)), "--dry-run")
    one_line_error(rc, err, "d.yaml:6:", "value", "duplicate key", "line 5")
    rc, _, err = cli_run(capsys, "run", str(write("d2.yaml", "runs: []\nruns: []\n")), "--dry-run")
    one_line_error(rc, err, "d2.yaml:2:", "runs: duplicate key")


@pytest.mark.parametrize("server", [{"api_key": "sekret"}], indirect=True)
def test_unset_api_key_env_is_named(server, monkeypatch):
    from llmarch_lab import LabError
    from llmarch_lab.llm.endpoint import Endpoint

    monkeypatch.delenv("NOPE_UNSET_KEY", raising=False)
    with pytest.raises(LabError) as e:
        Endpoint(server, "m", api_key_env="NOPE_UNSET_KEY").preflight()
    msg = str(e.value)
    assert "NOPE_UNSET_KEY" in msg and "NOT set" in msg and "401" in msg and "\n" not in msg


def test_base_url_error_names_the_field(capsys, write, empty_store):
    text = "runs:\n  - name: s\n    notebook: 40_serving\n    params: {engine: external, base_url: 'ftp://x/v1'}\n"
    rc, _, err = cli_run(capsys, "run", str(write("ftp.yaml", text)), "--dry-run")
    line = one_line_error(rc, err, "ftp.yaml:4: base_url:", "http://", "'ftp://x/v1'")
    assert "(root)" not in line and "{" not in line
    text = "runs:\n  - name: s\n    notebook: 40_serving\n    params: {engine: external}\n"
    rc, _, err = cli_run(capsys, "run", str(write("nourl.yaml", text)), "--dry-run")
    line = one_line_error(rc, err, "nourl.yaml:", "base_url:", "engine=external")
    assert "(root)" not in line


def test_notebook_that_is_not_a_notebook_names_the_suite_line(capsys, tmp_path, write, empty_store):
    fake = tmp_path / "passwd"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    text = f"runs:\n  - name: s\n    notebook: {fake}\n"
    rc, _, err = cli_run(capsys, "run", str(write("nb.yaml", text)), "--dry-run")
    one_line_error(rc, err, "nb.yaml:3:", "runs[0] (s).notebook", str(fake), "not a readable notebook")


def test_workers_are_bounded(capsys, write, empty_store):
    rc, _, err = cli_run(capsys, "run", str(write("s.yaml", suite_text())), "--dry-run", "--workers", "100000")
    one_line_error(rc, err, "--workers", "64", "llmarch-lab run --help")
    rc, _, err = cli_run(capsys, "run", str(write("s.yaml", suite_text())), "--dry-run", "--workers", "0")
    one_line_error(rc, err, "--workers")


def test_missing_llmarch_home(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_HOME", str(tmp_path / "nope"))
    rc, _, err = cli_run(capsys, "list")
    one_line_error(rc, err, f"$LLMARCH_HOME='{tmp_path / 'nope'}'", "no such directory")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LLMARCH_HOME", str(tmp_path / "empty"))
    rc, _, err = cli_run(capsys, "list")
    one_line_error(rc, err, "no experiments/ or notebooks/")


# ---------------------------------------------------------------------------- newcomer notes

def test_help_has_examples_and_no_type_noise(capsys):
    rc, out, _ = cli_run(capsys, "run", "--help")
    assert rc == 0
    assert "Examples:" in out and "--dry-run --show-params" in out and "SUITE" in out
    assert "<bool>" not in out and "{suite}" not in out
    rc, out, _ = cli_run(capsys, "report", "--help")
    assert "Examples:" in out and "--format md" in out


def test_list_shows_choices_and_ranges(capsys):
    rc, out, err = cli_run(capsys, "list")
    assert rc == 0, err
    qs = out[out.index("notebook 00_quickstart"):]
    assert "max_new_tokens" in qs and "int 1..4096" in qs
    assert "auto|float32|bfloat16|float16" in qs and "Literal" not in out


def test_show_params_prints_resolved_parameters(capsys, write, empty_store):
    rc, out, err = cli_run(capsys, "run", str(write("s.yaml", suite_text())), "--dry-run", "--show-params")
    assert rc == 0, err
    assert "# p  (probe, lab probe)" in out and "value: 3" in out and "sleep_s: 0.0" in out


def test_report_lists_failed_runs_with_their_error(capsys, store, write):
    path = write("mixed.yaml", suite_text("{value: 5}") + f"  - name: bad\n    notebook: {PROBE_NB}\n"
                 "    params: {fail: true}\n")
    proc = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "run", str(path), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "FAILED bad" in proc.stderr, proc.stderr[-2000:]
    rc, out, err = cli_run(capsys, "report", "mixed")
    assert rc == 0, err
    assert "FAILED bad (probe):" in out and "Error" in out.split("FAILED bad (probe):")[1].splitlines()[0]
    assert "Creating initial" not in out + err


# The KILLED runs announced on resume: tests/test_runner.py::test_killed_then_rerun_end_to_end.


# --------------------------------------------------------------------------------------- fuzz

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                     st.text(max_size=30))
_keys = st.one_of(st.sampled_from(["suite", "description", "runs", "name", "notebook", "params", "grid",
                                   "value", "sleep_s", "fail", "seed", "api_key"]), st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(_keys, inner, max_size=4)),
                       max_leaves=12)
_entry = st.fixed_dictionaries({"name": st.one_of(st.text(max_size=8), _scalars),
                                "notebook": st.sampled_from([str(PROBE_NB), "00_quickstart", "nosuch", "/etc/hostname", ""])},
                               optional={"params": st.dictionaries(st.sampled_from(["value", "sleep_s", "fail", "seed", "nope"]),
                                                                   _scalars, max_size=3),
                                         "grid": st.dictionaries(st.sampled_from(["value", "seed", "fail"]),
                                                                 st.lists(_scalars, max_size=3), max_size=2),
                                         "extra": _values})
_suite = st.one_of(_values, st.fixed_dictionaries({"runs": st.lists(_entry, max_size=3)},
                                                  optional={"suite": _scalars, "description": _scalars}))


def _yaml_text(draw_value, mangle: int, raw: bytes) -> bytes:
    import yaml

    text = yaml.safe_dump(draw_value, allow_unicode=True, default_flow_style=None).encode()
    if mangle == 1:  # arbitrary bytes spliced in: broken UTF-8, tabs, control characters
        text = text[: len(raw)] + raw + text[len(raw):]
    elif mangle == 2:
        text = raw
    return text


@settings(max_examples=int(os.environ.get("LLMARCH_FUZZ_EXAMPLES", "300")), deadline=10_000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_suite, mangle=st.sampled_from([0, 0, 1, 2]), raw=st.binary(max_size=40))
def test_fuzz_suite_files(tmp_path_factory, capsys, monkeypatch, doc, mangle, raw):
    """Any suite file: exit 0 or 2, one error line at most, no traceback, bounded time, and a dry
    run (or a failing load) writes nothing anywhere."""
    tmp = tmp_path_factory.mktemp("fuzz")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    path = tmp / "suite.yaml"
    path.write_bytes(_yaml_text(doc, mangle, raw))
    before = tree(tmp)
    t0 = time.perf_counter()
    rc = cli.main(["run", str(path), "--dry-run", "--quiet"])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr()
    assert rc in (0, 2), (rc, out.err)
    assert "Traceback" not in out.out + out.err
    if rc == 2:
        errors = [ln for ln in out.err.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and "\n" not in errors[0], out.err
    assert elapsed < 8, elapsed
    assert tree(tmp) == before


# -------------------------------------------------- an output never overwrites an input (Hardening v2, class 3)

def _outputs(tmp_path, store_db):
    """(command args with OUT in place of the output, the input that must survive) per command that writes."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"text_a": "a", "text_b": "b", "label": 1}\n')
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "hello"}\n')
    return {"cache eval": (["cache", "eval", "--pairs", str(pairs), "--out", "OUT"], pairs, "--pairs"),
            "guard scan": (["guard", "scan", "--check", "injection", "--in", str(prompts), "--out", "OUT",
                            "--detector", "rules", "--quiet"], prompts, "--in"),
            "report": (["report", "quickstart", "--format", "md", "--out", "OUT"], store_db, "the MLflow store")}


@pytest.mark.parametrize("cmd", ["cache eval", "guard scan", "report"])
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "folder", "unwritable"])
def test_an_output_is_never_one_of_the_inputs_and_is_checked_before_the_work(cmd, how, tmp_path, capsys, store):
    from llmarch_lab import paths
    from llmarch_lab.store import tracking

    tracking.ensure_experiment("quickstart")  # the store file exists: report's input
    db = paths.sqlite_path(paths.tracking_uri())
    args, src, name = _outputs(tmp_path, db)[cmd]
    before = src.read_bytes()
    out = {"same": src, "symlink": tmp_path / "link.out", "hardlink": tmp_path / "hard.out",
           "folder": tmp_path / "adir", "unwritable": Path("/proc/llmarch-out.json")}[how]
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hardlink":
        os.link(src, out)
    elif how == "folder":
        out.mkdir()
    listing = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()  # MLflow's own lines from creating the store above
    rc, _, err = cli_run(capsys, *[str(out) if a == "OUT" else a for a in args])
    line = one_line_error(rc, err, f"--out {out}")
    want = {"same": name, "symlink": name, "hardlink": name, "folder": "is a folder", "unwritable": "in a system folder"}[how]
    assert want in line, line
    assert src.read_bytes() == before, "the input was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "something was left behind"


@pytest.mark.parametrize("how", ["holds-input", "cwd", "foreign", "file", "unwritable"])
def test_a_report_folder_never_replaces_an_input_or_a_foreign_folder(how, tmp_path, monkeypatch):
    from llmarch_lab import LabError
    from llmarch_lab.common.files import OUTPUT_MARKER, check_output_dir

    req = tmp_path / "reqs" / "r.yaml"
    req.parent.mkdir()
    req.write_text("system: x\n")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "sub")
    out, needle = {"holds-input": (req.parent, "holds the requirements file"),
                   "cwd": (tmp_path / "work", "holds the working directory"),
                   "foreign": (foreign, "no .llmarch-output"), "file": (req, "is a file"),
                   "unwritable": (Path("/proc/llmarch-report"), "in a system folder")}[how]
    with pytest.raises(LabError, match=needle):
        check_output_dir(out, {"the requirements file": req})
    assert req.read_text() == "system: x\n" and (foreign / "todo.txt").read_text() == "mine"
    # a folder it wrote before (the marker), an empty one and a new one under missing parents are fine
    ours = tmp_path / "old-report"
    ours.mkdir()
    (ours / OUTPUT_MARKER).write_text("llmarch-lab system report\n")
    (tmp_path / "empty").mkdir()
    for ok in (ours, tmp_path / "empty", tmp_path / "new" / "deeper" / "report"):
        assert check_output_dir(ok, {"the requirements file": req}) == ok
