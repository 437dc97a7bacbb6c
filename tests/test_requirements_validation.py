"""A requirements file (experiments/system/*.yaml) refuses every value it used to accept silently:
no latency SLO, a p99 bound below the p50 one, an infinite or NaN number, a number written as a
string (or a bool), names that could leave their folder, over-long or control-character text.
Each is one line naming the file, the line and the field, from `load` and from the CLI (exit 2)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from llmarch_lab import LabError
from llmarch_lab.cli.main import main
from llmarch_lab.system import requirements

QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "system" / "quickstart.yaml"
BASE = yaml.safe_load(QUICKSTART.read_text())


def _write(tmp_path: Path, patch: dict) -> Path:
    """quickstart.yaml with `patch` applied: {"a.b.0.c": value} sets that item (value DROP deletes it)."""
    data = copy.deepcopy(BASE)
    for dotted, value in patch.items():
        *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        node = data
        for k in parents:
            node = node[k]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    p = tmp_path / "req.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=False))
    return p


DROP = object()
INF, NAN = float("inf"), float("nan")

BAD = {
    # at least one latency SLO
    "empty slos": ({"slos": {}}, "slos", "no latency SLO"),
    "error_rate only": ({"slos": {"error_rate": 0.01}}, "slos", "no latency SLO"),
    # percentile order of the same metric
    "ttft p99 < p50": ({"slos.ttft_ms_p50": 500, "slos.ttft_ms_p99": 100}, "slos", "ttft_ms_p99: 100 is below ttft_ms_p50"),
    "tpot p99 < p50": ({"slos.tpot_ms_p99": 50}, "slos", "tpot_ms_p99: 50 is below tpot_ms_p50"),
    # finite numbers everywhere
    "inf price": ({"hardware.0.usd_per_hour": INF}, "hardware.0.usd_per_hour", "finite number"),
    "nan budget": ({"budget_usd_month": NAN}, "budget_usd_month", "finite number"),
    "inf floor": ({"quality.0.min": INF}, "quality.0.min", "finite number"),
    "inf slo": ({"slos.e2e_ms_p99": INF}, "slos.e2e_ms_p99", "finite number"),
    "inf headroom": ({"sizing": {"headroom": -INF}}, "sizing.headroom", "finite number"),
    # numbers are numbers: no "5", no true, no 64.5 for a count
    "string rps": ({"workload.peak_rps": "5"}, "workload.peak_rps", "valid number"),
    "string tokens": ({"workload.prompt_tokens": "64"}, "workload.prompt_tokens", "valid integer"),
    "fractional tokens": ({"workload.output_tokens": 16.5}, "workload.output_tokens", "valid integer"),
    "bool requests": ({"verify.requests": True}, "verify.requests", "valid integer"),
    "string bool": ({"verify.enabled": "yes"}, "verify.enabled", "valid boolean"),
    "string price": ({"hardware.1.usd_per_hour": "1.006"}, "hardware.1.usd_per_hour", "valid number"),
    # names that become files, folders, bundle paths or Kubernetes names
    "hw slash": ({"hardware.0.name": "../cpu"}, "hardware.0.name", "letters, digits"),
    "hw backslash": ({"hardware.1.name": "a\\b"}, "hardware.1.name", "letters, digits"),
    "hw dot first": ({"hardware.1.name": ".hidden"}, "hardware.1.name", "letters, digits"),
    "hw too long": ({"hardware.1.name": "a" * 65}, "hardware.1.name", "letters, digits"),
    "system path": ({"system": "../quick"}, "system", "lowercase letters"),
    "system upper": ({"system": "Quick_Start"}, "system", "lowercase letters"),
    "system too long": ({"system": "a" * 41}, "system", "lowercase letters"),
    "lab path": ({"quality.0": {"name": "q", "sources": [{"lab": "rag/..", "metric": "quality.ndcg_at_10"}], "min": 0.1}},
                 "quality.0.sources.0.lab", "letters, digits"),
    # text: bounded and printable
    "long description": ({"description": "x" * 1001}, "description", "at most 1000 characters"),
    "escape in floor name": ({"quality.0.name": "ok\x1b[2Jcleared"}, "quality.0.name", "control character"),
    "long source": ({"hardware.0.source": "https://x/" + "a" * 1000}, "hardware.0.source", "at most 1000"),
    "memory not a quantity": ({"hardware.0.memory": "4Gi\nfoo: bar"}, "hardware.0.memory", "pattern"),
    # other bounds
    "hours per month": ({"sizing": {"hours_per_month": 1000}}, "sizing.hours_per_month", "less than or equal to 744"),
    "no experiments": ({"experiments": []}, "experiments", "at least 1 item"),
}


@pytest.mark.parametrize("patch, field, message", BAD.values(), ids=BAD.keys())
def test_a_bad_value_is_one_line_naming_file_line_and_field(tmp_path, patch, field, message):
    p = _write(tmp_path, patch)
    with pytest.raises(LabError) as err:
        requirements.load(p)
    text = str(err.value)
    assert "\n" not in text
    assert re.search(rf"^{re.escape(str(p))}:\d+: {re.escape(field)}: .*{re.escape(message)}", text), text


@pytest.mark.parametrize("case", ["inf price", "hw slash", "ttft p99 < p50"])
def test_the_cli_refuses_it_with_exit_2_and_one_line(tmp_path, capsys, case):
    patch, field, message = BAD[case]
    p = _write(tmp_path, patch)
    rc = main(["system", "choose", str(p)])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert err.count("\n") == 1 and str(p) in err and f" {field}: " in err and message in err, err


def test_legitimate_values_still_load(tmp_path):
    for f in requirements.files():  # the repo's own files
        assert requirements.load(f).hardware
    req = requirements.load(_write(tmp_path, {
        "workload.peak_rps": 2,  # an int for a float
        "slos": {"ttft_ms_p50": 800, "ttft_ms_p99": 800, "tpot_ms_p99": 40},  # equal percentiles are fine
        "hardware.0.name": "cpu_2.vCPU",
        "hardware.0.date": "read 2026-06-17",  # free text as well as a YAML date
        "hardware.1.memory": "16.5Gi", "hardware.1.cpu": "1500m",
        "description": "Line one.\n\tLine two, with ünïcode.",
        "experiments": DROP,
    }))
    assert req.workload.peak_rps == 2.0 and req.hardware[0].name == "cpu_2.vCPU" and req.experiments is None
    assert req.hardware[1].date == "2026-06-17" and req.slos.latency_items() == {"ttft_ms_p99": 800, "ttft_ms_p50": 800,
                                                                                  "tpot_ms_p99": 40}
