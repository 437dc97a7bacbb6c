"""Reading runs back: searches within and across experiments, metric histories, logged tables."""

from __future__ import annotations

import tempfile
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.store.mlstore import client, store_exists
from llmarch_lab.store.runmeta import flatten


def search(experiment: str, tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
           status: str = "FINISHED", max_results: int = 1000) -> list[dict[str, Any]]:
    """Runs of an experiment matching tags and (flattened) params, newest first, as plain dicts:
    {run_id, name, status, tags, params, metrics}. Labs use it to find a same-suite baseline."""
    if not store_exists():  # nothing has run yet: no runs (and no empty store made by a read)
        return []
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
    if not store_exists():  # nothing has run yet: no runs (and no empty store made by a read)
        return []
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
    if not store_exists():  # nothing has run yet: no runs (and no empty store made by a read)
        return []
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
    if not store_exists():  # nothing has run yet: no runs (and no empty store made by a read)
        return []
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
    return load_csv(run_id, f"tables/{name}.csv", f"table {name!r}")


def load_csv(run_id: str, artifact_path: str, what: str = ""):
    """A CSV artifact of a run (e.g. the alert drill's drill.csv), as a DataFrame."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    c = client(paths.tracking_uri())
    try:
        c.get_run(run_id)
    except MlflowException:
        raise LabError(f"run {run_id!r}: not found in the tracking store {paths.tracking_uri()}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = c.download_artifacts(run_id, artifact_path, tmp)
        except (MlflowException, OSError):
            raise LabError(f"run {run_id!r} has no {what or artifact_path} (artifact {artifact_path})") from None
        return pd.read_csv(path)
