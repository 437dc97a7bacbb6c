"""The MLflow layer labs log through: runs (LabRun, start) here, with the public names of
mlstore.py (store, experiments, checks), runmeta.py (params, run tags, the results schema) and
queries.py (reading runs back) re-exported, so that callers use `tracking.X` for all of them.

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

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.results import Result, check_metric
from llmarch_lab.store.mlstore import client, ensure_experiment, first_line, no_store, require_store
from llmarch_lab.store.queries import labs_in, load_csv, load_table, metric_history, search, search_many, unfinished_runs
from llmarch_lab.store.runmeta import (
    data_tags,
    environment_tags,
    flatten,
    is_secret,
    params_identity,
    schema_tags,
    scrub,
)

RUN_ID_ENV = "LLMARCH_RUN_ID"
SUITE_ENV = "LLMARCH_SUITE"
INTERACTIVE_EXPERIMENT = "interactive"


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


__all__ = ["client", "current_suite", "data_tags", "ensure_experiment", "environment_tags", "first_line", "flatten",
           "INTERACTIVE_EXPERIMENT", "is_secret", "LabRun", "labs_in", "load_csv", "load_table", "metric_history", "no_store",
           "params_identity", "require_store", "RUN_ID_ENV", "schema_tags", "scrub", "search", "search_many", "start",
           "SUITE_ENV", "unfinished_runs"]
