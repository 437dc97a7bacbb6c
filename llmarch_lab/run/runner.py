"""Run a suite: each parameter set executes its notebook with papermill under an MLflow run.

    llmarch-lab run experiments/quickstart.yaml [--workers N] [--only NAME] [--dry-run] [--force]
                    [--executor local|ray|slurm] [--address RAY_ADDRESS]

For every run of the suite:
1. identity = hash(notebook sources, resolved parameters); a FINISHED run with that identity in
   the suite's experiment is skipped (resume), unless --force;
2. a worker (a thread here, a Ray task, a submitit/Slurm job: `executors`) claims the identity in
   the tracking store (`claims`: exactly one claimant wins, across processes and hosts), creates
   the MLflow run, nested under one parent run per invocation, and executes the notebook in a
   fresh kernel (papermill in a child bound to the worker, `nbchild`) with $LLMARCH_RUN_ID set,
   so the notebook's `tracking.start()` attaches to it; the worker heartbeats the run's lease;
3. the executed notebook is logged as an artifact and the run ends FINISHED, or FAILED with the
   failing cell's error in the tag `llmarch.error`. One failure does not stop the suite.

`execute_identity` is that worker: the same code on every executor. A run whose lease died (its
worker or runner is gone, or its heartbeat is older than the lease) is marked KILLED by the next
invocation, on any host, and runs again; a run whose lease is alive elsewhere is left to its
holder, never executed twice.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from llmarch_lab import LabError, paths
from llmarch_lab.common import env
from llmarch_lab.common.procs import alive
from llmarch_lab.config import RunSpec, Suite
from llmarch_lab.run import claims, stopping
from llmarch_lab.store import tracking

PID_TAG, HOST_TAG, START_TAG = "llmarch.runner_pid", "llmarch.runner_host", "llmarch.runner_started"
ERROR_TAG = claims.ERROR_TAG
PARENT_TAG = claims.PARENT_TAG
WORKDIR_PREFIX = "llmarch-run-"
OWNER_FILE = ".llmarch-owner"
# papermill waits 60 s for a kernel by default; on a loaded 2-core machine (four kernels starting
# at once) that has not been enough, so the default is 300 s and $LLMARCH_KERNEL_START_S overrides.
KERNEL_START_ENV, KERNEL_START_S = "LLMARCH_KERNEL_START_S", 300
# Environment a worker on another host needs to see as the driver does.
FORWARDED_ENV = ("LLMARCH_LEASE_TTL_S", "LLMARCH_CACHE_DIR", "LLMARCH_DATA_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "TOKENIZERS_PARALLELISM", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                 "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_INSECURE_TLS", KERNEL_START_ENV)


@dataclass
class RunOutcome:
    spec: RunSpec
    status: str  # FINISHED | FAILED | SKIPPED (finished, or taken by another invocation) | PLANNED (dry
    # run) | RUNNING (held by another invocation, left to it) | LOST (the worker died; re-run later)
    # | KILLED, NOT STARTED (Ctrl-C: run_suite then raises stopping.Interrupted)
    run_id: str = ""
    wall_s: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def _runner_tags() -> dict[str, str]:
    me = psutil.Process()
    return {PID_TAG: str(me.pid), HOST_TAG: socket.gethostname(), START_TAG: f"{me.create_time():.3f}"}


def sweep_workdirs(root: str | None = None) -> list[str]:
    """Remove /tmp/llmarch-run-* folders whose owner process (recorded inside) is gone from this
    host: what a worker killed with kill -9 could not remove itself."""
    removed = []
    for d in Path(root or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            host, pid, started = (d / OWNER_FILE).read_text().split(":")
        except (OSError, ValueError):
            continue
        if host == socket.gethostname() and not alive(int(pid), float(started)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


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


@dataclass
class RunTask:
    """What a worker needs to execute one run, anywhere: plain, picklable data."""

    suite_path: str
    run_name: str
    identity: str
    exp_id: str
    parent_id: str
    tracking_uri: str
    home: str
    force: bool = False
    env: dict[str, str] = field(default_factory=dict)


def kernel_start_s() -> int:
    """Seconds papermill waits for a kernel to start: $LLMARCH_KERNEL_START_S, else 300 (common/env)."""
    return int(env.get(KERNEL_START_ENV))


def execute(spec: RunSpec, run_id: str, out_dir: Path, timeout_s: int | None = None,
            on_start=None) -> tuple[bool, str, Path]:
    """Execute one notebook with papermill in a child process bound to this one (`nbchild`);
    (ok, error line, executed path). `on_start(proc)` is handed the child (to stop it)."""
    out = out_dir / f"{spec.notebook.stem}.ipynb"
    params_file = out_dir / "params.yaml"
    params_file.write_text(yaml.safe_dump(spec.resolved(), sort_keys=True))
    env = {**os.environ, tracking.RUN_ID_ENV: run_id, tracking.SUITE_ENV: spec.suite,
           "MLFLOW_TRACKING_URI": paths.tracking_uri(), "LLMARCH_HOME": str(paths.home()),
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "llmarch_lab.run.nbchild", "--parent", str(os.getpid()), "--workdir", str(out_dir),
           "--", str(spec.notebook), str(out), "-f", str(params_file),
           "--cwd", str(spec.notebook.parent), "--no-progress-bar", "--log-level", "WARNING",
           "--start-timeout", str(kernel_start_s())]
    if timeout_s:
        cmd += ["--execution-timeout", str(timeout_s)]
    log = out_dir / "papermill.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        if on_start:
            on_start(proc)
        rc = proc.wait()
    text = log.read_text() if log.exists() else ""
    if rc == 0:
        return True, "", out
    err = notebook_error(out) if out.exists() else ""
    if not err:
        tail = [ln for ln in text.strip().splitlines() if ln.strip()]
        err = tail[-1] if tail else f"papermill exited with status {rc}"
    return False, err[:1000], out


_STORE_LOCK = threading.Lock()  # threads of one process take turns at run creation (SQLite: one writer)


def execute_identity(task: RunTask) -> dict:
    """The worker: claim the run, execute it under a heartbeat, log it. The same code for every
    executor; returns {status, run_id, wall_s, error} (status FINISHED | FAILED | SKIPPED | LOST)."""
    from mlflow.entities import Param

    if stopping.requested():  # Ctrl-C: a queued run does not start
        return {"status": "NOT STARTED", "run_id": "", "wall_s": 0.0, "error": "interrupted before it started"}
    os.environ.update(task.env)
    os.environ["MLFLOW_TRACKING_URI"] = task.tracking_uri
    os.environ["LLMARCH_HOME"] = task.home
    from llmarch_lab import config

    c = tracking.client(task.tracking_uri)
    spec = next((s for s in config.load_suite(task.suite_path, only=[task.run_name]).runs
                 if s.name == task.run_name), None)
    if spec is None or spec.identity() != task.identity:
        return {"status": "FAILED", "run_id": "", "wall_s": 0.0,
                "error": f"{task.suite_path}: run {task.run_name} changed since the invocation planned it"}
    with _STORE_LOCK:
        st = claims.identity_states(c, task.exp_id, identity=task.identity).get(task.identity)
        if st is not None and st.state == "running":
            holder = (st.run.data.tags.get(claims.HOLDER_TAG, "?") if st.run is not None else "a claim")
            return {"status": "SKIPPED", "run_id": st.run.info.run_id if st.run is not None else "", "wall_s": 0.0,
                    "error": f"running elsewhere ({holder})"}
        if st is not None and st.finished is not None and not task.force:
            return {"status": "SKIPPED", "run_id": st.finished.info.run_id, "wall_s": 0.0,
                    "error": "finished meanwhile by another invocation"}
        claim = claims.try_claim(c, task.exp_id, task.identity, st.next_attempt if st else 1)
        if claim is None:
            return {"status": "SKIPPED", "run_id": "", "wall_s": 0.0, "error": "claimed by another invocation"}
        worker = claims.me()
        tags = {**tracking.schema_tags(spec.params, spec.notebook.stem, spec.suite, task.identity),
                **_runner_tags(), "mlflow.parentRunId": task.parent_id, "llmarch.name": spec.name,
                "llmarch.overrides": json.dumps(tracking.scrub(spec.overrides), sort_keys=True),
                claims.TOKEN_TAG: claim.token, claims.ATTEMPT_TAG: str(claim.attempt),
                claims.HOLDER_TAG: claim.holder, claims.WORKER_TAG: worker,
                claims.HEARTBEAT_TAG: f"{time.time():.3f}", claims.PHASE_TAG: "executing"}
        run = c.create_run(task.exp_id, run_name=spec.name, tags=tags)
        run_id = run.info.run_id
        c.log_batch(run_id, params=[Param(k, v) for k, v in tracking.flatten(spec.resolved()).items()])

    child: list[subprocess.Popen] = []

    def stop_child(_run_id):  # our lease was taken: the notebook stops, nothing more is written
        for p in child:
            if p.poll() is None:
                p.terminate()  # nbchild ends its kernel and removes the work folder

    hb = claims.Heartbeat(c, on_lost=stop_child, name=f"lease-{run_id[:8]}").start()
    hb.add(run_id, claim.token)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    try:
        (tmp / OWNER_FILE).write_text(worker)
        ok, err, executed = execute(spec, run_id, tmp, on_start=lambda p: (child.append(p), stopping.register(p)))
        wall = time.perf_counter() - t0
        for p in child:
            stopping.unregister(p)
        if stopping.requested():  # stopped by Ctrl-C: the invocation marks the run KILLED
            return {"status": "KILLED", "run_id": run_id, "wall_s": wall, "error": stopping.INTERRUPTED_WHY}
        if run_id in hb.lost or not hb.holds(run_id, claim.token):
            return {"status": "LOST", "run_id": run_id, "wall_s": wall,
                    "error": "lease lost (the run was marked KILLED elsewhere): nothing logged"}
        c.set_tag(run_id, claims.PHASE_TAG, "logging")
        with _STORE_LOCK:
            if executed.exists():
                redact_notebook(executed)
                c.log_artifact(run_id, str(executed), "notebook")
            if (tmp / "papermill.log").exists():
                c.log_artifact(run_id, str(tmp / "papermill.log"), "notebook")
            c.log_metric(run_id, "latency.run_wall_s", wall)
            if not ok:
                c.set_tag(run_id, ERROR_TAG, err)
            c.set_tag(run_id, claims.PHASE_TAG, "done")
            c.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        return {"status": "FINISHED" if ok else "FAILED", "run_id": run_id, "wall_s": wall, "error": err}
    finally:
        hb.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _task_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def run_suite(suite: Suite, workers: int = 1, force: bool = False, dry_run: bool = False,
              progress: bool = True, announce=None, executor: str | None = None,
              address: str | None = None) -> list[RunOutcome]:
    """Execute a validated suite on an executor (local threads by default, `ray`, `slurm`);
    returns one outcome per run in suite order. `announce(line)` hears about runs found dead
    and marked KILLED, and about runs left to another invocation."""
    from tqdm.auto import tqdm

    from llmarch_lab.run import executors

    stopping.reset()
    exists = tracking.require_store(write=not dry_run)
    c = tracking.client(paths.tracking_uri(), create=not dry_run) if exists or not dry_run else None
    if dry_run:  # plan only: never create a store or an experiment, never touch a run
        exp = c.get_experiment_by_name(suite.name) if exists else None
        exp_id = exp.experiment_id if exp else None
        states = claims.identity_states(c, exp_id, reap_dead=False) if exp_id else {}
    else:
        exp_id = tracking.ensure_experiment(suite.name)
        sweep_workdirs()
        states = claims.identity_states(c, exp_id, announce=announce)

    outcomes, pending = _sort_runs(suite, states, force, dry_run, announce)
    if dry_run:
        if (executor or suite.executor.get("kind", "local")) == "ray":
            executors.check_ray_address(address or suite.executor.get("address") or env.get("RAY_ADDRESS"))
        for i, spec in pending:
            outcomes[i] = RunOutcome(spec, "PLANNED")
        return [outcomes[i] for i in range(len(suite.runs))]
    if not pending:
        return [outcomes[i] for i in range(len(suite.runs))]

    ex = executors.make(executor or suite.executor.get("kind", "local"), workers=workers,
                        address=address, options=suite.executor, suite=suite)
    try:
        parent = c.create_run(exp_id, run_name=f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                              tags={"suite": suite.name, PARENT_TAG: "true", "llmarch.suite_file": str(suite.path),
                                    "llmarch.executor": ex.name, **_runner_tags(), **tracking.environment_tags(),
                                    claims.HOLDER_TAG: claims.me(), claims.HEARTBEAT_TAG: f"{time.time():.3f}"})
    except Exception as e:  # noqa: BLE001 - e.g. a store that turned read-only: one line
        raise LabError(f"MLflow store {paths.tracking_uri()}: cannot create the suite's run: "
                       f"{tracking.first_line(e)}") from None
    parent_id = parent.info.run_id
    hb = claims.Heartbeat(c, name="lease-parent").start()
    hb.add(parent_id, "")  # the parent has no claim token: its lease is the invocation's
    tasks = [RunTask(str(suite.path), spec.name, spec.identity(), exp_id, parent_id, paths.tracking_uri(),
                     str(paths.home()), force, _task_env()) for _, spec in pending]
    bar = tqdm(total=len(pending), desc=f"suite {suite.name} ({ex.name})", unit="run", disable=not progress)

    def done(k: int, result) -> None:
        i, spec = pending[k]
        if isinstance(result, executors.WorkerLost):  # the worker itself died (Ray node, Slurm job)
            outcomes[i] = RunOutcome(spec, "LOST", error=str(result)[:500])
        elif isinstance(result, BaseException):  # the worker raised: a runner-side failure of this run
            outcomes[i] = RunOutcome(spec, "FAILED", error=f"{type(result).__name__}: {tracking.first_line(result)}"[:500])
        else:
            run = result.get("run_id", "")
            metrics = c.get_run(run).data.metrics if run and result["status"] in ("FINISHED", "FAILED", "SKIPPED") else {}
            outcomes[i] = RunOutcome(spec, result["status"], run, result.get("wall_s", 0.0),
                                     result.get("error", ""), metrics)
        bar.set_postfix_str(f"{spec.name}: {outcomes[i].status}")
        bar.update(1)

    hint = stopping.resume_hint(suite.path)
    try:
        with stopping.on_sigint(hint):
            ex.run(execute_identity, tasks, done)
    finally:
        bar.close()
        hb.stop()
        ex.close()
        killed = _settle(c, exp_id, parent_id, suite, outcomes, pending)
    if stopping.requested():
        raise stopping.Interrupted(stopping.summary(killed, len(suite.runs), [o.status for o in outcomes.values()], hint))
    return [outcomes[i] for i in range(len(suite.runs))]


def _settle(c, exp_id: str, parent_id: str, suite: Suite, outcomes: dict, pending: list) -> list[str]:
    """The invocation's end in the store: runs stopped by Ctrl-C marked KILLED (their names are
    returned), the parent run's status, runs whose worker died released for the next invocation."""
    failed = any(o.status in ("FAILED", "LOST") for o in outcomes.values())
    killed = stopping.mark_killed(c, exp_id, parent_id) if stopping.requested() else []
    if stopping.requested() or len(outcomes) < len(suite.runs):  # interrupted
        c.set_terminated(parent_id, "KILLED")
    else:
        c.set_terminated(parent_id, "FAILED" if failed else "FINISHED")
    lost = [(spec, outcomes[i].error) for i, spec in pending if i in outcomes and outcomes[i].status == "LOST"]
    if lost:
        _release_lost(c, exp_id, parent_id, lost)
    return killed


def _sort_runs(suite: Suite, states: dict, force: bool, dry_run: bool, announce) -> tuple[dict, list]:
    """({suite index: outcome} for runs settled without executing: RUNNING elsewhere, FINISHED,
    a duplicate; [(suite index, spec)] for the runs to execute)."""
    outcomes: dict[int, RunOutcome] = {}
    pending: list[tuple[int, RunSpec]] = []
    seen_identity: dict[str, int] = {}
    for i, spec in enumerate(suite.runs):
        ident = spec.identity()
        st = states.get(ident)
        if st is not None and st.state == "running":
            holder = st.run.data.tags.get(claims.HOLDER_TAG) or claims.legacy_holder(st.run.data.tags) \
                if st.run is not None else "a fresh claim"
            age = claims.heartbeat_age(st.run.data.tags) if st.run is not None else None
            outcomes[i] = RunOutcome(spec, "RUNNING", st.run.info.run_id if st.run is not None else "",
                                     error=f"held by {holder}" + (f", heartbeat {age:.0f} s ago" if age is not None else ""))
            if announce and not dry_run:
                announce(f"note: run {spec.name} is RUNNING under another invocation ({outcomes[i].error}): left to it")
        elif st is not None and st.finished is not None and not force:
            done = st.finished
            outcomes[i] = RunOutcome(spec, "SKIPPED", done.info.run_id,
                                     done.data.metrics.get("latency.run_wall_s", 0.0), metrics=done.data.metrics)
        elif ident in seen_identity:  # the same notebook and parameters twice in one suite
            outcomes[i] = RunOutcome(spec, "SKIPPED", error=f"same as {suite.runs[seen_identity[ident]].name}")
        else:
            seen_identity[ident] = i
            pending.append((i, spec))
    return outcomes, pending


def _release_lost(c, exp_id: str, parent_id: str, lost: list[tuple[RunSpec, str]]) -> None:
    """Runs whose worker died under us (the executor said so, e.g. a Ray node went away): marked
    KILLED now rather than when their lease runs out, so the next invocation re-runs them."""
    for spec, why in lost:
        for r in c.search_runs([exp_id], f"tags.identity = '{spec.identity()}' and attributes.status = 'RUNNING' "
                                         f"and tags.`mlflow.parentRunId` = '{parent_id}'"):
            claims.mark_killed(c, r, f"its worker died ({why})")
