"""Tracking against a real sqlite MLflow store: schema, secrets, interactive runs."""

import pytest
from labtest import ProbeParams

from llmarch_lab import LabError, paths
from llmarch_lab.results import Result, check_metric
from llmarch_lab.store import tracking


@pytest.mark.parametrize("name", ["quality.perplexity", "latency.ttft_ms_p99", "latency.load_s",
                                  "latency.itl_ms_p50", "throughput.output_tok_per_s", "memory.peak_rss_mb",
                                  "cost.usd_per_1m_output_tokens", "quality.ndcg_at_10"])
def test_schema_accepts(name):
    assert check_metric(name, 1) == 1.0


@pytest.mark.parametrize("name", ["perplexity", "latency.ttft", "memory.peak_rss", "speed.tok_per_s"])
def test_schema_rejects(name):
    with pytest.raises(LabError, match="outside the results schema"):
        check_metric(name, 1)


def test_nan_metric_is_rejected():
    with pytest.raises(LabError, match="not finite"):
        Result(metrics={"quality.macro_f1": float("nan")})


def test_secrets_never_flattened():
    flat = tracking.flatten({"model": "m", "api_key": "x", "judge": {"token": "t", "url": "u"},
                             "password": "p", "hf_token": "h", "max_tokens": 5})
    assert flat == {"model": "m", "judge.url": "u", "max_tokens": "5"}


def test_interactive_run_has_schema_tags_and_finishes(store, monkeypatch):
    monkeypatch.delenv(tracking.RUN_ID_ENV, raising=False)
    params = ProbeParams(value=5, api_key="sk-zzz")
    with tracking.start(params, notebook="probe") as run:
        run.log_result(Result(metrics={"quality.value": 5}, tags={"model": "m"}))
    r = tracking.search("interactive", tags={"lab": "probe"})[0]
    assert r["metrics"]["quality.value"] == 5.0
    assert r["params"]["value"] == "5" and "api_key" not in r["params"]
    for tag in ("lab", "suite", "notebook", "identity", "git_sha", "git_dirty", "device", "cpu", "seed"):
        assert tag in r["tags"]
    # the sqlite store keeps artifacts beside the database, not in the working directory
    exp = tracking.client(paths.tracking_uri()).get_experiment_by_name("interactive")
    assert exp.artifact_location.startswith(f"file://{store[len('sqlite:///'):].rsplit('/', 1)[0]}")


def test_failed_interactive_run_is_marked_failed(store, monkeypatch):
    monkeypatch.delenv(tracking.RUN_ID_ENV, raising=False)
    with pytest.raises(ValueError):
        with tracking.start(ProbeParams(value=9), notebook="probe"):
            raise ValueError("boom")
    r = tracking.search("interactive", status="FAILED")[0]
    assert r["tags"]["llmarch.error"] == "ValueError: boom"


def test_unreachable_tracking_server_is_one_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(LabError) as e:
        tracking.require_store(write=False)
    assert "http://127.0.0.1:9" in str(e.value) and "\n" not in str(e.value)
