"""House v2: the registry, the metric specs, the shared statistics and the one report path."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llmarch_lab import LabError, registry, schema
from llmarch_lab.common import stats
from llmarch_lab.common.files import write_atomic
from llmarch_lab.common.report import Report
from llmarch_lab.results import Result

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ registry

def test_registry_covers_every_notebook_and_resolves_lazily():
    labs = {json.loads(nb.read_text())["metadata"]["llmarch_lab"]["lab"] for nb in (ROOT / "notebooks").glob("*.ipynb")}
    assert labs == set(registry.names())
    for name in registry.names():
        entry = registry.get(name)
        assert (ROOT / "notebooks" / f"{entry.notebook}.ipynb").is_file()
        assert registry.params_class(name).lab == name
        assert callable(registry.run_function(name))
        assert callable(registry.load(entry.report))


def test_registry_errors_name_the_lab_and_the_string():
    with pytest.raises(LabError, match=r"unknown lab 'nosuch' \(valid: quickstart"):
        registry.get("nosuch")
    with pytest.raises(LabError, match="cannot import 'llmarch_lab.labs.nosuch:run'"):
        registry.load("llmarch_lab.labs.nosuch:run")


def test_importing_the_cli_loads_no_lab():
    code = "import sys, llmarch_lab.cli, llmarch_lab.registry; print(sorted(m for m in sys.modules if m.startswith('llmarch_lab.labs.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_old_notebook_metadata_names_the_new_field(tmp_path):
    from llmarch_lab import config

    nb = json.loads((ROOT / "notebooks" / "00_quickstart.ipynb").read_text())
    nb["metadata"]["llmarch_lab"] = {"params": "llmarch_lab.quickstart:QuickstartParams"}  # before House v2
    old = tmp_path / "old.ipynb"
    old.write_text(json.dumps(nb))
    with pytest.raises(LabError, match="moved in House v2; set metadata.llmarch_lab.lab"):
        config.notebook_params_class(old)


# -------------------------------------------------------------------------------- metric specs

@pytest.mark.parametrize("name,direction", [
    ("quality.perplexity", "lower"), ("quality.ndcg_at_10", "higher"), ("quality.recall_at_25", "higher"),
    ("latency.ttft_ms_p99", "lower"), ("latency.sweep.ttft_ms_p99", "lower"), ("latency.query_ms_p90", "lower"),
    ("latency.load_s", "lower"), ("throughput.decode_tok_per_s_b8", "higher"), ("memory.peak_rss_mb", "lower"),
    ("errors.error_rate", "lower"), ("count.best_step", "none"), ("quality.zero_shot_raw_macro_f1", "higher"),
    ("quality.ppl_delta_pct", "lower"), ("quality.ragas.faithfulness", "higher"),
    ("quality.accuracy_gain_vs_majority_ci95_low", "higher"), ("cost.usd_per_1m_output_tokens", "lower"),
])
def test_declared_metrics_have_a_direction(name, direction):
    assert schema.direction(name) == direction


@pytest.mark.parametrize("name", ["quality.error_rate", "quality.best_step", "quality.colour",
                                  "latency.ttft_ms_p42", "throughput.vibes"])
def test_undeclared_metric_fails_where_a_lab_logs_it(name):
    with pytest.raises(LabError, match="not declared|outside the results schema"):
        Result().add(name, 1.0)


def test_every_spec_has_unit_or_meaning_and_a_valid_direction():
    for s in schema.SPECS:
        assert s.direction in ("higher", "lower", "none") and s.meaning, s
        assert s.pattern.split(".")[0] in schema.PREFIXES


# -------------------------------------------------------------------------------- statistics

def test_percentiles_are_the_one_set():
    p = stats.percentiles(range(1, 101), "latency.x_ms")
    assert set(p) == {"latency.x_ms_p50", "latency.x_ms_p90", "latency.x_ms_p95", "latency.x_ms_p99", "latency.x_ms_mean"}
    assert p["latency.x_ms_p90"] == pytest.approx(90.1)
    assert stats.percentiles([], "latency.x_ms", required=False) == {}
    with pytest.raises(LabError, match="latency.x_ms: no samples"):
        stats.percentiles([], "latency.x_ms")


def test_paired_bootstrap_finds_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 300)
    better = base + 0.05 + rng.normal(0, 0.02, 300)  # small gain, paired: clear
    noisy = base + rng.normal(0, 0.2, 300)  # no gain: interval holds 0
    r = stats.paired_bootstrap(stats.mean_difference, better, base, n_resamples=500)
    assert r["clear"] and r["ci_low"] > 0 and r["ci_low"] < r["delta"] < r["ci_high"]
    r0 = stats.paired_bootstrap(stats.mean_difference, noisy, base, n_resamples=500)
    assert not r0["clear"] and r0["ci_low"] < 0 < r0["ci_high"]
    with pytest.raises(LabError, match="equal lengths"):
        stats.paired_bootstrap(stats.mean_difference, better, base[:10])


def test_pareto_front_uses_directions_and_tolerance():
    df = pd.DataFrame({"ppl": [10.0, 12.0, 11.0, 10.05], "tok_s": [20.0, 30.0, 15.0, 19.0]}, index=list("abcd"))
    front = stats.pareto_front(df, {"ppl": "lower", "tok_s": "higher"})
    # c is worse than a on both; d ties a on ppl (within 2%) and is slower, so a dominates it
    assert front == ["a", "b"]
    assert stats.pareto_front(df, {"ppl": "higher", "tok_s": "lower"}) == ["b", "c"]
    with pytest.raises(LabError, match="direction"):
        stats.pareto_front(df, {"ppl": "better"})


# -------------------------------------------------------------------------------------- report

def test_report_renders_markdown_csv_and_marks_the_best(tmp_path):
    rep = Report("t", pd.DataFrame({"run": ["x", "y"], "ndcg": [0.5, 0.7], "ms": [3.0, 9.0], "run_id": ["1", "2"]}),
                 {"ndcg": "higher", "ms": "lower"})
    md = rep.markdown()
    assert "| run | ndcg ↑ | ms ↓ |" in md and "| y | 0.7 * | 9 |" in md and "| x | 0.5 | 3 * |" in md
    assert "run_id" not in md and "run_id" in rep.csv()
    out = tmp_path / "r" / "t.md"
    write_atomic(out, md)
    assert out.read_text() == md and not list(out.parent.glob(".*tmp"))
