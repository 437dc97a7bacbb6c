"""Limits on what a user writes (Hardening v2, class 9) and malformed notebooks (class 4): every
input is bounded before the work it feeds, refused with exit 2 and one line naming the file, the
line and the field and the limit, and no message prints a user's value back unbounded or raw.
In-process through the CLI's own entry point, on tiny files; the limits come from
llmarch_lab/common/yamlmodel.py (the LIMITS block)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmarch_lab.cli.main import main
from llmarch_lab.common import yamlmodel
from llmarch_lab.common.yamlmodel import echo

ROOT = Path(__file__).resolve().parent.parent
PROBE_NB = ROOT / "tests" / "notebooks" / "probe.ipynb"


@pytest.fixture(autouse=True)
def empty_store(tmp_path, monkeypatch):
    """A store that does not exist yet: a refused suite must not create it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    yield
    assert not (tmp_path / "store").exists()


def refused(capsys, path: Path, *needles: str, within_s: float = 5.0) -> str:
    """`run PATH --dry-run`: exit 2, one line on stderr naming the file and every needle, in time."""
    t0 = time.perf_counter()
    rc = main(["run", str(path), "--dry-run", "--quiet"])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err[:500])
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:500]
    assert str(path) in lines[0] and "Traceback" not in err
    assert "\x1b" not in err and "\x9b" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert elapsed < within_s, elapsed
    return lines[0]


def suite(tmp_path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def entry(name: str = "p", notebook: Path = PROBE_NB, params: str = "{value: 1}", grid: str = "{}") -> str:
    return f"runs:\n  - name: {name}\n    notebook: {notebook}\n    params: {params}\n    grid: {grid}\n"


# ------------------------------------------------------------------------------- YAML limits

def test_alias_bomb_is_refused_while_composing(tmp_path, capsys):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    path = suite(tmp_path, bomb + entry())  # 9**9 values once expanded
    refused(capsys, path, f"{path}:", "100,000 values", "MAX_NODES", within_s=2.0)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path, capsys):
    path = suite(tmp_path, entry(params="&a {value: [*a]}"))
    refused(capsys, path, f"{path}:4:", "alias", "own anchor")


def test_nesting_deeper_than_the_limit(tmp_path, capsys):
    deep = "[" * yamlmodel.MAX_DEPTH + "]" * yamlmodel.MAX_DEPTH
    refused(capsys, suite(tmp_path, entry(params=f"{{value: {deep}}}")), ":4:", "MAX_DEPTH")
    very = "[" * 5000 + "]" * 5000
    refused(capsys, suite(tmp_path, entry(params=f"{{value: {very}}}"), "v.yaml"), ":4:", "MAX_DEPTH")
    # aliases nest deeper than the text: an anchor of 15 levels used 10 levels down
    text = "x: &x " + "[" * 15 + "]" * 15 + "\n" + entry(params="{value: " + "[" * 9 + "*x" + "]" * 9 + "}")
    refused(capsys, suite(tmp_path, text, "a.yaml"), "MAX_DEPTH")


def test_a_huge_grid_written_out_is_refused_by_its_size(tmp_path, capsys):
    values = ",".join(["1"] * (yamlmodel.MAX_NODES + 1))
    refused(capsys, suite(tmp_path, entry(params="{}", grid=f"{{value: [{values}]}}")), ":5:", "MAX_NODES")


def test_an_oversize_file_is_refused_before_parsing(tmp_path, capsys):
    path = suite(tmp_path, entry() + "#" * yamlmodel.MAX_FILE_BYTES + "\n")
    refused(capsys, path, "1 MiB", "MAX_FILE_BYTES", "split it", within_s=2.0)


def test_a_megabyte_value_is_refused_and_not_echoed(tmp_path, capsys):
    path = suite(tmp_path, entry(params="{api_key: '" + "x" * 1_000_000 + "'}"))
    line = refused(capsys, path, f"{path}:4:", "runs.0.params.api_key", "MAX_STRING_CHARS", "1,000,000 characters")
    assert len(line) < 400, len(line)
    path = suite(tmp_path, "description: " + "y" * 20_000 + "\n" + entry(), "d.yaml")
    assert len(refused(capsys, path, f"{path}:1:", "description")) < 400


# ------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("name, needles", [
    ('"p\\e[31mred"', (":2:", "runs.0.name", "control character", r"'\x1b'")),  # ESC, as YAML writes it
    ('"p\\x9b2J"', (":2:", "runs.0.name", "control character", r"\x9b")),      # C1 CSI
    ('"p\\u202egnp.exe"', (":2:", "runs[0].name", "printable")),                # right-to-left override
    ("n" * (yamlmodel.MAX_NAME_CHARS + 1), (":2:", "runs[0].name", "MAX_NAME_CHARS")),
])
def test_entry_names_are_printable_and_short(tmp_path, capsys, name, needles):
    refused(capsys, suite(tmp_path, entry(name=name)), *needles)


def test_grid_labels_are_printable_and_short(tmp_path, capsys):
    refused(capsys, suite(tmp_path, entry(params="{}", grid='{api_key: ["a\\nb"]}')),
            ":5:", "runs[0] (p).grid", "printable", r"\n")
    long = "k" * (yamlmodel.MAX_RUN_NAME_CHARS)
    refused(capsys, suite(tmp_path, entry(params="{}", grid=f"{{api_key: [{long}]}}"), "l.yaml"),
            ":5:", "MAX_RUN_NAME_CHARS")


def test_keys_and_the_suite_name_are_bounded(tmp_path, capsys):
    refused(capsys, suite(tmp_path, entry(params='{"v\\ealue": 1}')), ":4:", "key", "MAX_NAME_CHARS")
    refused(capsys, suite(tmp_path, "suite: " + "s" * 101 + "\n" + entry(), "n.yaml"), ":1:", "suite:")


def test_a_notebook_path_too_long_for_the_file_system(tmp_path, capsys):
    refused(capsys, suite(tmp_path, entry(notebook="n" * 5000)), ":3:", "runs[0] (p).notebook", "MAX_PATH_CHARS")
    refused(capsys, suite(tmp_path, entry(notebook="/tmp/" + "n" * 300), "f.yaml"), ":3:", "unknown notebook")


# ------------------------------------------------------------------------- malformed notebooks

def probe() -> dict:
    return json.loads(PROBE_NB.read_text())


def _with(**change):
    nb = probe()
    nb.update(change)
    return nb


def _cells(fn):
    nb = probe()
    fn(nb["cells"])
    return nb


@pytest.mark.parametrize("content, needles", [
    ([1, 2], ("the file's JSON must be an object",)),
    (_with(metadata="str"), ("metadata must be an object",)),
    (_with(metadata={"llmarch_lab": "quickstart"}), ("metadata.llmarch_lab must be an object",)),
    (_with(cells="nope"), ("cells must be a list",)),
    (_with(cells=None), ("cells must be a list",)),
    (_cells(lambda c: c.append(7)), ("cells[3] must be an object",)),
    (_cells(lambda c: c[1].update(source=[1])), ("cells[1].source",)),
    (_cells(lambda c: c[1].update(metadata=[])), ("cells[1].metadata must be an object",)),
    (_cells(lambda c: c[1].update(metadata={"tags": "parameters"})), ("cells[1].metadata.tags",)),
    (_cells(lambda c: c[1].update(cell_type=None)), ("cells[1].cell_type",)),
    (_cells(lambda c: c[1].update(metadata={})), ("0 cells tagged 'parameters'",)),
    (_cells(lambda c: c[1].update(source="value = (")), ("parameters cell: not valid Python",)),
    (_with(metadata={"llmarch_lab": {"params": ""}}), ("metadata.llmarch_lab.lab is missing",)),
    (_with(metadata={"llmarch_lab": {"params": "..x:Y"}}), ('must be "module:Class"',)),
    (_with(metadata={"llmarch_lab": {"params": "json:JSONDecoder"}}), ("not a parameters model",)),
    ("[" * 100_000 + "]" * 100_000, ("not a readable notebook", "nested too deeply")),
])
def test_a_malformed_notebook_is_one_line_naming_it(tmp_path, capsys, content, needles):
    nb = tmp_path / "bad.ipynb"
    nb.write_text(content if isinstance(content, str) else json.dumps(content))
    path = suite(tmp_path, entry(notebook=nb))
    refused(capsys, path, f"{path}:3:", "runs[0] (p).notebook", str(nb), *needles)


def test_an_oversize_notebook_is_refused_before_parsing(tmp_path, capsys):
    nb = tmp_path / "big.ipynb"
    nb.write_text(json.dumps(_with(padding="x" * yamlmodel.MAX_NOTEBOOK_BYTES)))
    refused(capsys, suite(tmp_path, entry(notebook=nb)), ":3:", "MAX_NOTEBOOK_BYTES", "clear its outputs")


def test_a_good_suite_still_runs_dry(tmp_path, capsys):
    assert main(["run", str(suite(tmp_path, entry(grid="{seed: [1, 2]}"))), "--dry-run", "--quiet"]) == 0
    assert capsys.readouterr().out.count("PLANNED") == 2


# -------------------------------------------------------------------------------------- echo

def test_echo_is_bounded_and_escapes_terminal_bytes():
    assert echo("ab") == "'ab'" and echo("ab", bare=True) == "ab"
    long = echo("x" * 1_000_000)
    assert len(long) < 2 * yamlmodel.ECHO_CHARS and long.endswith("(1,000,000 characters)") and "…" in long
    assert "\x1b" not in echo("\x1b[2J" * 50) and len(echo("\x1b" * 1000)) < 3 * yamlmodel.ECHO_CHARS
    assert echo("\x1b", bare=True) == r"'\x1b'"
    assert len(echo(list(range(10_000)))) <= yamlmodel.ECHO_CHARS + 1
    assert len(echo({"k" * 500: ["v" * 500] * 50})) <= yamlmodel.ECHO_CHARS + 1
