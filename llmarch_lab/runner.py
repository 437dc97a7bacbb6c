"""Run a suite: each parameter set executes its notebook with papermill under an MLflow run.

    llmarch-lab run experiments/quickstart.yaml [--workers N] [--only NAME] [--dry-run] [--force]

For every run of the suite:
1. identity = hash(notebook sources, resolved parameters); a FINISHED run with that identity in
   the suite's experiment is skipped (resume), unless --force;
2. the runner creates the MLflow run, nested under one parent run per invocation, and executes
   the notebook in a fresh kernel (papermill, in a child process) with $LLMARCH_RUN_ID set, so the
   notebook's `tracking.start()` attaches to it;
3. the executed notebook is logged as an artifact and the run ends FINISHED, or FAILED with the
   failing cell's error in the tag `llmarch.error`. One failure does not stop the suite.

Runs left RUNNING by a runner that died (its pid on this host is gone) are marked KILLED at the
next invocation and, being unfinished, run again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from llmarch_lab import LabError, paths, tracking
from llmarch_lab.config import RunSpec, Suite

PID_TAG, HOST_TAG, START_TAG = "llmarch.runner_pid", "llmarch.runner_host", "llmarch.runner_started"
ERROR_TAG = "llmarch.error"
PARENT_TAG = "llmarch.parent"


@dataclass
class RunOutcome:
    spec: RunSpec
    status: str  # FINISHED | FAILED | SKIPPED (finished earlier) | PLANNED (dry run)
    run_id: str = ""
    wall_s: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def _runner_tags() -> dict[str, str]:
    me = psutil.Process()
    return {PID_TAG: str(me.pid), HOST_TAG: socket.gethostname(), START_TAG: f"{me.create_time():.3f}"}


def _runner_alive(tags: dict[str, str]) -> bool:
    """Is the process that owns a RUNNING run still there? Unknown owners count as alive."""
    if tags.get(HOST_TAG) != socket.gethostname() or PID_TAG not in tags:
        return True  # another machine's run: we cannot tell, leave it alone
    try:
        proc = psutil.Process(int(tags[PID_TAG]))
        # A recycled pid belongs to a process started later than the run's runner.
        return abs(proc.create_time() - float(tags.get(START_TAG, proc.create_time()))) < 1.0
    except (psutil.NoSuchProcess, ValueError):
        return False


def reap_dead_runs(exp_id: str, announce=None) -> list[str]:
    """Mark RUNNING runs whose runner died as KILLED; returns their run names. `announce(line)`
    is told about each (the CLI prints it: a resumed suite says what it found)."""
    c = tracking.client(paths.tracking_uri())
    killed = []
    for run in c.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=5000):
        if not _runner_alive(run.data.tags):
            pid = run.data.tags.get(PID_TAG)
            c.set_tag(run.info.run_id, ERROR_TAG, f"runner pid {pid} died; marked KILLED and re-run")
            c.set_terminated(run.info.run_id, "KILLED")
            if run.data.tags.get(PARENT_TAG) != "true":
                killed.append(run.info.run_name)
                if announce:
                    announce(f"note: run {run.info.run_name} ({run.info.run_id[:8]}) was left RUNNING by runner "
                             f"pid {pid}, which is gone: marked KILLED; it runs again unless finished since")
    return killed


def finished_run(exp_id: str, identity: str):
    c = tracking.client(paths.tracking_uri())
    runs = c.search_runs([exp_id], f"tags.identity = '{identity}' and attributes.status = 'FINISHED'",
                         max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def notebook_error(executed: Path) -> str:
    """'Ename: evalue' of the first error output in an executed notebook, if any."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                ename = out.get("ename", "Error")
                if ename == "PapermillExecutionError":
                    continue
                return f"{ename}: {out.get('evalue', '')}".strip()
    return ""


def redact_notebook(path: Path) -> None:
    """Blank secret-looking assignments (api_key = ...) in the parameters cells before logging."""
    nb = json.loads(path.read_text())
    pm = nb.get("metadata", {}).get("papermill", {})
    if isinstance(pm.get("parameters"), dict):
        pm["parameters"] = {k: ("***" if tracking.is_secret(k) else v) for k, v in pm["parameters"].items()}
    for cell in nb.get("cells", []):
        if not {"parameters", "injected-parameters"} & set(cell.get("metadata", {}).get("tags", [])):
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = []
        for line in src.splitlines():
            name = line.split("=", 1)[0].strip()
            lines.append(f'{name} = "***"  # redacted' if "=" in line and tracking.is_secret(name) else line)
        cell["source"] = "\n".join(lines)
    path.write_text(json.dumps(nb, indent=1))


def execute(spec: RunSpec, run_id: str, out_dir: Path, timeout_s: int | None = None) -> tuple[bool, str, Path]:
    """Execute one notebook with papermill in a child process; (ok, error line, executed path)."""
    out = out_dir / f"{spec.notebook.stem}.ipynb"
    params_file = out_dir / "params.yaml"
    params_file.write_text(yaml.safe_dump(spec.resolved(), sort_keys=True))
    env = {**os.environ, tracking.RUN_ID_ENV: run_id, tracking.SUITE_ENV: spec.suite,
           "MLFLOW_TRACKING_URI": paths.tracking_uri(), "LLMARCH_HOME": str(paths.home()),
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "papermill", str(spec.notebook), str(out), "-f", str(params_file),
           "--cwd", str(spec.notebook.parent), "--no-progress-bar", "--log-level", "WARNING"]
    if timeout_s:
        cmd += ["--execution-timeout", str(timeout_s)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (out_dir / "papermill.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode == 0:
        return True, "", out
    err = notebook_error(out) if out.exists() else ""
    if not err:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        err = tail[-1] if tail else f"papermill exited with status {proc.returncode}"
    return False, err[:1000], out


def _run_one(spec: RunSpec, exp_id: str, parent_id: str, lock: threading.Lock) -> RunOutcome:
    from mlflow.entities import Param

    c = tracking.client(paths.tracking_uri())
    identity = spec.identity()
    tags = {**tracking.schema_tags(spec.params, spec.notebook.stem, spec.suite, identity),
            **_runner_tags(), "mlflow.parentRunId": parent_id, "llmarch.name": spec.name,
            "llmarch.overrides": json.dumps(tracking.scrub(spec.overrides), sort_keys=True)}
    with lock:  # sqlite takes one writer at a time; keep run creation short and serial
        run = c.create_run(exp_id, run_name=spec.name, tags=tags)
        run_id = run.info.run_id
        c.log_batch(run_id, params=[Param(k, v) for k, v in tracking.flatten(spec.resolved()).items()])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmarch-run-") as tmp:
        ok, err, executed = execute(spec, run_id, Path(tmp))
        wall = time.perf_counter() - t0
        with lock:
            if executed.exists():
                redact_notebook(executed)
                c.log_artifact(run_id, str(executed), "notebook")
            c.log_artifact(run_id, str(Path(tmp) / "papermill.log"), "notebook")
            c.log_metric(run_id, "latency.run_wall_s", wall)
            if not ok:
                c.set_tag(run_id, ERROR_TAG, err)
            c.set_terminated(run_id, "FINISHED" if ok else "FAILED")
    metrics = c.get_run(run_id).data.metrics
    return RunOutcome(spec, "FINISHED" if ok else "FAILED", run_id, wall, err, metrics)


def run_suite(suite: Suite, workers: int = 1, force: bool = False, dry_run: bool = False,
              progress: bool = True, announce=None) -> list[RunOutcome]:
    """Execute a validated suite; returns one outcome per run in suite order. `announce(line)`
    hears about runs found dead and marked KILLED."""
    from tqdm.auto import tqdm

    exists = tracking.require_store(write=not dry_run)
    c = tracking.client(paths.tracking_uri()) if exists or not dry_run else None  # a client creates a sqlite store
    if dry_run:  # plan only: never create a store or an experiment, never touch a run
        exp = c.get_experiment_by_name(suite.name) if exists else None
        exp_id = exp.experiment_id if exp else None
    else:
        exp_id = tracking.ensure_experiment(suite.name)
        reap_dead_runs(exp_id, announce)

    outcomes: dict[int, RunOutcome] = {}
    pending: list[tuple[int, RunSpec]] = []
    seen_identity: dict[str, int] = {}
    for i, spec in enumerate(suite.runs):
        ident = spec.identity()
        done = None if force or exp_id is None else finished_run(exp_id, ident)
        if done is not None:
            outcomes[i] = RunOutcome(spec, "SKIPPED", done.info.run_id,
                                     done.data.metrics.get("latency.run_wall_s", 0.0),
                                     metrics=done.data.metrics)
        elif ident in seen_identity:  # the same notebook and parameters twice in one suite
            outcomes[i] = RunOutcome(spec, "SKIPPED", error=f"same as {suite.runs[seen_identity[ident]].name}")
        else:
            seen_identity[ident] = i
            pending.append((i, spec))
    if dry_run:
        for i, spec in pending:
            outcomes[i] = RunOutcome(spec, "PLANNED")
        return [outcomes[i] for i in range(len(suite.runs))]
    if not pending:
        return [outcomes[i] for i in range(len(suite.runs))]

    try:
        parent = c.create_run(exp_id, run_name=f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                              tags={"suite": suite.name, PARENT_TAG: "true", "llmarch.suite_file": str(suite.path),
                                    **_runner_tags(), **tracking.environment_tags()})
    except Exception as e:  # noqa: BLE001 - e.g. a store that turned read-only: one line
        raise LabError(f"MLflow store {paths.tracking_uri()}: cannot create the suite's run: "
                       f"{tracking.first_line(e)}") from None
    parent_id = parent.info.run_id
    lock = threading.Lock()
    bar = tqdm(total=len(pending), desc=f"suite {suite.name}", unit="run", disable=not progress)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(_run_one, spec, exp_id, parent_id, lock): i for i, spec in pending}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    outcomes[i] = fut.result()
                except Exception as e:  # a runner-side failure for one run never stops the others
                    outcomes[i] = RunOutcome(suite.runs[i], "FAILED", error=f"{type(e).__name__}: {e}"[:500])
                bar.set_postfix_str(f"{suite.runs[i].name}: {outcomes[i].status}")
                bar.update(1)
    finally:
        bar.close()
        failed = any(o.status == "FAILED" for o in outcomes.values())
        if len(outcomes) < len(suite.runs):  # interrupted
            c.set_terminated(parent_id, "KILLED")
        else:
            c.set_terminated(parent_id, "FAILED" if failed else "FINISHED")
    return [outcomes[i] for i in range(len(suite.runs))]


def summary_rows(outcomes: list[RunOutcome]) -> list[dict[str, str]]:
    """One row per run: name, notebook, status, wall time, the lab's key metrics."""
    rows = []
    for o in outcomes:
        keys = type(o.spec.params).key_metrics
        shown = [f"{k.split('.', 1)[1]}={_fmt(o.metrics[k])}" for k in keys if k in o.metrics]
        rows.append({"run": o.spec.name, "notebook": o.spec.notebook.stem, "status": o.status,
                     "wall_s": f"{o.wall_s:.1f}" if o.wall_s else "-",
                     "key metrics": "  ".join(shown) or (o.error[:100] if o.error else "-")})
    return rows


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
