"""Suite and parameter validation: every problem is one line naming file, line and field."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmarch_lab import LabError, config

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "notebooks" / "probe.ipynb"


def suite_text(params="{}", grid="{}", extra=""):
    return f"""suite: t
runs:
  - name: a
    notebook: {PROBE}
    params: {params}
    grid: {grid}
{extra}"""


def error_of(path, **kw) -> str:
    with pytest.raises(LabError) as e:
        config.load_suite(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_grid_expands_to_cartesian_product(write):
    p = write("s.yaml", suite_text(params="{sleep_s: 0}", grid="{value: [1, 2, 3], fail: [false, true]}"))
    s = config.load_suite(p)
    assert len(s.runs) == 6
    assert {r.params.value for r in s.runs} == {1, 2, 3}
    assert s.runs[0].name == "a[value=1,fail=False]"
    assert len({r.identity() for r in s.runs}) == 6


def test_unknown_parameter_names_file_line_and_field(write):
    p = write("s.yaml", "suite: t\nruns:\n  - name: a\n    notebook: " + str(PROBE)
              + "\n    params:\n      value: 2\n      valeu: 3\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:7:"), msg
    assert "valeu: unknown parameter" in msg and "valid: seed, value" in msg


def test_wrong_type_names_field(write):
    p = write("s.yaml", suite_text(params="{value: lots}"))
    msg = error_of(p)
    assert f"{p}:5" in msg and "value:" in msg and "integer" in msg


def test_grid_value_error_points_at_grid_line(write):
    p = write("s.yaml", suite_text(grid="{sleep_s: [0, -1]}"))
    msg = error_of(p)
    assert f"{p}:6" in msg and "sleep_s" in msg


def test_bad_yaml_gives_line_number(write):
    p = write("s.yaml", "suite: t\nruns:\n  - name: a\n    params: {value: [1, 2}\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:4:") and "bad YAML" in msg


def test_unknown_notebook_lists_valid_ones(write):
    p = write("s.yaml", "runs:\n  - name: a\n    notebook: 99_nope\n")
    msg = error_of(p)
    assert f"{p}:3" in msg and "unknown notebook '99_nope'" in msg and "00_quickstart" in msg


def test_unknown_keys_at_suite_and_entry_level(write):
    assert "colour: unknown key" in error_of(write("a.yaml", suite_text(extra="colour: red")))
    p = write("b.yaml", f"runs:\n  - name: a\n    notebook: {PROBE}\n    parms: {{}}\n")
    assert f"{p}:4: runs[0].parms: unknown key" in error_of(p)


def test_only_selects_entries_and_reports_unknown(write):
    p = write("s.yaml", suite_text(grid="{value: [1, 2]}"))
    assert len(config.load_suite(p, only=["a"]).runs) == 2
    assert "no such run" in error_of(p, only=["b"])


def test_missing_suite_file():
    assert "suite file not found" in error_of(Path("/nonexistent/s.yaml"))


def test_cli_prints_one_error_line_and_exits_2(write):
    p = write("s.yaml", suite_text(params="{value: x}"))
    proc = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "run", str(p)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "value" in lines[0]


def test_identity_ignores_outputs_but_not_code(tmp_path):
    nb = json.loads(PROBE.read_text())
    a = tmp_path / "a.ipynb"
    a.write_text(json.dumps(nb))
    fp = config.notebook_fingerprint(a)
    nb["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    a.write_text(json.dumps(nb))
    assert config.notebook_fingerprint(a) == fp
    nb["cells"][2]["source"] += "\n# changed"
    a.write_text(json.dumps(nb))
    assert config.notebook_fingerprint(a) != fp


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_parameters_cell_matches_its_model(nb):
    """One parameters cell, no outputs, and its literals validate against the notebook's model."""
    data = json.loads(nb.read_text())
    assert not any(c.get("outputs") for c in data["cells"] if c["cell_type"] == "code"), "commit without outputs"
    values = config.parameters_cell(nb)
    cls = config.notebook_params_class(nb)
    model = cls.from_namespace(values, str(nb))  # a multi-part lab takes its part's fields only
    missing = set(cls.model_fields) - set(values)
    assert not missing, f"parameters cell lacks {missing}"
    # the cell's values are the model's defaults, so the notebook and CLI agree on what runs
    assert model == cls()
    defaults = cls().model_dump()
    assert {k: values[k] for k in defaults} == defaults
    assert all(f.description for f in cls.model_fields.values()), "help text on every field"


def test_a_part_takes_only_its_own_fields_and_names_the_part():
    from typing import Literal

    from llmarch_lab.parts import PartsParams

    class A(config.LabParams):
        part: Literal["a"] = "a"
        x: int = 1

    class B(config.LabParams):
        part: Literal["b"] = "b"
        y: int = 2

    class Flat(PartsParams, A, B):
        lab = "flat"
        parts = {"a": A, "b": B}
        part: Literal["a", "b"] = "a"

    assert Flat(part="b", y=5).part_params() == B(y=5)
    assert Flat(x=3).part_params() == A(x=3)
    with pytest.raises(LabError, match=r"suite.yaml: x: not a parameter of part 'b' \(it belongs to part 'a'; "
                                       r"part 'b' takes: seed, y\)"):
        config.validate_params(Flat, {"part": "b", "x": 3}, "suite.yaml")
    # a notebook's namespace holds every part's defaults: only the chosen part's are taken
    assert Flat.from_namespace({"part": "b", "x": 9, "y": 4, "seed": 0}).part_params() == B(y=4)


def test_module_command_lines_read_key_values_and_fail_in_one_line(capsys):
    from llmarch_lab.common.entry import key_values, one_line_errors

    assert key_values(["steps=4", "lr=0.001", "mods=[q_proj, v_proj]"]) == {"steps": 4, "lr": 0.001,
                                                                         "mods": ["q_proj", "v_proj"]}
    with pytest.raises(LabError, match=r"arguments are key=value, got 'steps' \(keys: steps, lr\)"):
        key_values(["steps"], "steps, lr")
    with pytest.raises(LabError, match=r"lr=\[1: not a YAML value"):
        key_values(["lr=[1"])

    @one_line_errors
    def main(argv):
        key_values(argv)
        return 0

    assert main(["x=1"]) == 0 and main(["nope"]) == 2
    assert capsys.readouterr().err == "error: arguments are key=value, got 'nope'\n"
