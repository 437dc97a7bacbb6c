"""The runner against a real MLflow sqlite store and real papermill kernels."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmarch_lab import LabError, config, paths
from llmarch_lab.run import runner
from llmarch_lab.store import tracking

PROBE = Path(__file__).resolve().parent / "notebooks" / "probe.ipynb"


def probe_suite(write, name="probe", grid="{value: [1, 2]}", params="{}"):
    return write(f"{name}.yaml", f"suite: {name}\nruns:\n  - name: p\n    notebook: {PROBE}\n"
                                  f"    params: {params}\n    grid: {grid}\n")


def runs_of(suite, status=None):
    return [r for r in tracking.search(suite, status=status) if r["tags"].get("llmarch.parent") != "true"]


def test_runs_log_schema_and_resume_skips_finished(store, write):
    suite = config.load_suite(probe_suite(write, params="{api_key: sk-secret-123}"))
    out = runner.run_suite(suite, progress=False)
    assert [o.status for o in out] == ["FINISHED", "FINISHED"]
    runs = runs_of("probe", "FINISHED")
    assert len(runs) == 2
    r = runs[0]
    for tag in ("lab", "suite", "notebook", "identity", "git_sha", "git_dirty", "device", "cpu", "gpu",
                "seed", "version.torch", "version.mlflow", "mlflow.parentRunId"):
        assert tag in r["tags"], tag
    assert r["tags"]["lab"] == "probe" and r["tags"]["suite"] == "probe"
    assert sorted(x["metrics"]["quality.value"] for x in runs) == [1.0, 2.0]
    assert "api_key" not in r["params"] and all("sk-secret" not in v for v in r["params"].values())
    assert all("sk-secret" not in v for v in r["tags"].values())
    # executed notebook is attached
    files = [f.path for f in tracking.client(paths.tracking_uri()).list_artifacts(r["run_id"], "notebook")]
    assert "notebook/probe.ipynb" in files
    local = tracking.client(paths.tracking_uri()).download_artifacts(r["run_id"], "notebook/probe.ipynb")
    assert "sk-secret" not in Path(local).read_text()

    again = runner.run_suite(suite, progress=False)
    assert [o.status for o in again] == ["SKIPPED", "SKIPPED"]
    assert len(runs_of("probe", None)) == 2  # nothing new was created
    forced = runner.run_suite(suite, force=True, progress=False)
    assert [o.status for o in forced] == ["FINISHED", "FINISHED"]
    assert len(runs_of("probe", "FINISHED")) == 4


def test_failing_notebook_is_recorded_and_suite_goes_on(store, write):
    suite = config.load_suite(probe_suite(write, grid="{fail: [true, false]}"))
    out = runner.run_suite(suite, progress=False)
    assert [o.status for o in out] == ["FAILED", "FINISHED"]
    assert "RuntimeError: planted failure value=1" in out[0].error
    failed = runs_of("probe", "FAILED")
    assert len(failed) == 1
    assert failed[0]["tags"]["llmarch.error"].startswith("RuntimeError: planted failure")
    files = [f.path for f in tracking.client(paths.tracking_uri()).list_artifacts(failed[0]["run_id"], "notebook")]
    assert "notebook/probe.ipynb" in files
    # The parent run of the invocation is FAILED as well.
    parents = [r for r in tracking.search("probe", status="FAILED") if r["tags"].get("llmarch.parent") == "true"]
    assert len(parents) == 1
    # The CLI exits non-zero when a run failed; the failed run is re-tried, the finished one skipped.
    proc = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "run", str(suite.path), "--quiet"],
                          capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED p[fail=True]: RuntimeError: planted failure" in proc.stderr
    assert "SKIPPED" in proc.stdout


def test_killed_then_rerun_end_to_end(store, write):
    """The full cycle with a quick run: kill during execution, re-invoke, one KILLED + one FINISHED."""
    path = probe_suite(write, name="cycle", grid="{value: [3]}", params="{sleep_s: 4}")
    tracking.ensure_experiment("cycle")  # create the store before two processes poll it at once
    proc = subprocess.Popen([sys.executable, "-m", "llmarch_lab.cli", "run", str(path), "--quiet"],
                            env=os.environ, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not [r for r in runs_of("cycle", "RUNNING") if r["tags"].get("llmarch.name")]:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # runner and its kernel die without cleaning up
    proc.wait()
    left = [r for r in runs_of("cycle", "RUNNING") if r["tags"].get("llmarch.name")]
    assert len(left) == 1, "the killed runner should leave its run RUNNING"
    said: list[str] = []
    out = runner.run_suite(config.load_suite(path), progress=False, announce=said.append)
    assert [o.status for o in out] == ["FINISHED"]
    # the resumed suite says what it found (the CLI prints these lines on stderr)
    assert len(said) == 1 and said[0].startswith("note: run p[value=3] (") and "marked KILLED" in said[0], said
    children = runs_of("cycle")
    statuses = sorted(r["status"] for r in children)
    assert statuses == ["FINISHED", "KILLED"], statuses
    killed = [r for r in children if r["status"] == "KILLED"][0]
    assert killed["run_id"] == left[0]["run_id"] and "died" in killed["tags"]["llmarch.error"]


def test_parallel_workers_lose_and_duplicate_nothing(store, write):
    suite = config.load_suite(probe_suite(write, name="par", grid="{value: [1, 2, 3, 4, 5, 6, 7, 8, 9]}"))
    out = runner.run_suite(suite, workers=3, progress=False)
    assert [o.status for o in out] == ["FINISHED"] * 9, [o.error for o in out]
    runs = runs_of("par")
    assert len(runs) == 9 and all(r["status"] == "FINISHED" for r in runs)
    assert sorted(r["metrics"]["quality.value"] for r in runs) == [float(v) for v in range(1, 10)]
    assert len({r["tags"]["identity"] for r in runs}) == 9


def test_dry_run_plans_without_writing(store, write):
    suite = config.load_suite(probe_suite(write, name="dry"))
    out = runner.run_suite(suite, dry_run=True, progress=False)
    assert [o.status for o in out] == ["PLANNED", "PLANNED"]
    assert not paths.sqlite_path(paths.tracking_uri()).exists()  # no store, so no experiment either


def test_cli_summary_shows_grid_labels(store, write):
    path = probe_suite(write, name="labels", grid="{value: [4]}")
    proc = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "run", str(path), "--quiet"],
                          capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert "p[value=4]" in proc.stdout and "FINISHED" in proc.stdout


def test_kernel_start_timeout_is_300_s_and_env_overrides_it(monkeypatch):
    monkeypatch.delenv(runner.KERNEL_START_ENV, raising=False)
    assert runner.kernel_start_s() == 300
    monkeypatch.setenv(runner.KERNEL_START_ENV, "45")
    assert runner.kernel_start_s() == 45
    monkeypatch.setenv(runner.KERNEL_START_ENV, "soon")
    with pytest.raises(LabError, match=r"\$LLMARCH_KERNEL_START_S='soon'"):
        runner.kernel_start_s()
