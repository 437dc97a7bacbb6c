"""Suites: experiments/NAME.yaml loaded, expanded over its grids and validated before anything runs."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmarch_lab import LabError, paths
from llmarch_lab.common import yamlmodel
from llmarch_lab.common.yamlmodel import (
    MAX_NAME_CHARS,
    MAX_RUN_NAME_CHARS,
    compose_with_lines,
    echo,
    line_for,
    read_text_strict,
    shorten,
)
from llmarch_lab.config.notebooks import (
    notebook_fingerprint,
    notebook_params_class,
    parameters_cell,
    read_notebook,
    resolve_notebook,
)
from llmarch_lab.config.params import LabParams, validate_params

SUITE_KEYS = {"suite", "description", "executor", "runs"}
ENTRY_KEYS = {"name", "notebook", "params", "grid"}


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved, validated run of a suite."""

    suite: str
    name: str
    notebook: Path
    params: LabParams
    overrides: dict[str, Any] = field(default_factory=dict)  # what the suite set (for display)
    fingerprint: str = ""  # the notebook's, when the suite was loaded (read once per notebook)

    @property
    def lab(self) -> str:
        return type(self.params).lab

    def resolved(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    def identity(self) -> str:
        """hash(notebook content, resolved parameters): equal identity -> same result, resume skips."""
        payload = json.dumps({"notebook": self.fingerprint or notebook_fingerprint(self.notebook),
                              "params": self.resolved()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    runs: list[RunSpec]
    executor: dict[str, Any] = field(default_factory=dict)  # ExecutorSpec fields the suite set


class ExecutorSpec(BaseModel):
    """A suite's `executor:` block: where its runs execute by default (`--executor` overrides)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray", "slurm"] = Field("local", description="local threads, a Ray cluster, or Slurm (submitit).")
    address: str | None = Field(None, description="Ray: the cluster to join (ray://host:10001 or host:6379); none: a local cluster.")
    num_cpus: float | None = Field(None, gt=0, description="CPUs per run (default: the run's `threads` parameter, else 1).")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per run (default: 1 for device cuda*, else 0).")
    memory_gb: float | None = Field(None, gt=0, description="Memory per run, GiB (Ray resource / Slurm --mem).")
    slurm_cluster: Literal["slurm", "local", "debug"] | None = Field(None, description="Slurm: submitit's cluster (default: slurm where sbatch exists, else local subprocesses).")
    slurm_partition: str | None = Field(None, description="Slurm: the partition (sbatch --partition).")
    slurm_timeout_min: int = Field(240, ge=1, description="Slurm: the job time limit, minutes.")
    slurm_additional: dict[str, Any] = Field(default_factory=dict, description="Slurm: more sbatch options (submitit's slurm_additional_parameters).")
    folder: str | None = Field(None, description="Slurm: the submitit log folder (default .submitit/SUITE under the lab home).")


MAX_RUNS = yamlmodel.MAX_RUNS  # a suite that expands to more is refused before expansion (--max-runs)


def load_suite(path: str | Path, only: list[str] | None = None, max_runs: int = MAX_RUNS,
               notes: list[str] | None = None) -> Suite:
    """Load, expand and validate a suite file. Raises LabError before anything executes.

    `notes` collects lines worth telling the user that are not errors (a float taken as an int)."""
    path = _suite_file(Path(path))
    where = str(path)
    data, lines = compose_with_lines(read_text_strict(path), where)
    if not isinstance(data, dict):
        raise LabError(f"{where}:1: a suite is a mapping with keys {sorted(SUITE_KEYS)}")
    for key in data:
        if key not in SUITE_KEYS:
            raise LabError(f"{where}:{lines[(key,)]}: {key}: unknown key (valid: {', '.join(sorted(SUITE_KEYS))})")
    name = data.get("suite") or path.stem
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,%d}" % MAX_NAME_CHARS, name):
        raise LabError(f"{where}:{line_for(lines, ('suite',))}: suite: must be a plain name (letters, digits, "
                       f"_ . -; at most {MAX_NAME_CHARS}, the limit MAX_NAME_CHARS), got {echo(name)}")
    entries = data.get("runs")
    if not isinstance(entries, list) or not entries:
        raise LabError(f"{where}:{line_for(lines, ('runs',))}: runs: must be a non-empty list of runs")

    _check_size(entries, where, lines, max_runs)
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    valid = shorten(", ".join(map(str, names)), 4 * yamlmodel.ECHO_CHARS)
    for o in only or ():
        if o not in names and not any(isinstance(n, str) and o.startswith(n + "[") for n in names):
            raise LabError(f"{where}: --only {echo(o, bare=True)}: no such run (valid: {valid})")
    runs: list[RunSpec] = []
    seen: set[str] = set()
    read: dict[Path, tuple] = {}  # each notebook read once: (params class, fingerprint)
    for i, entry in enumerate(entries):
        checked = _check_entry(i, entry, where, lines, path.parent, read)
        runs += _expand(name, i, checked, where, lines, only, seen, notes)
    if only and not runs:
        raise LabError(f"{where}: --only {echo(','.join(only), bare=True)}: no such run (valid: {valid})")
    ex = data.get("executor") or {}
    if not isinstance(ex, dict):
        raise LabError(f"{where}:{line_for(lines, ('executor',))}: executor: must be a mapping "
                       f"with keys {', '.join(ExecutorSpec.model_fields)}")
    validate_params(ExecutorSpec, ex, f"{where}", {(k,): line_for(lines, ("executor", k)) for k in ex}, (), notes=notes)
    return Suite(name=name, path=path.resolve(), description=str(data.get("description") or ""), runs=runs,
                 executor=dict(ex))


def _suite_file(path: Path) -> Path:
    """The suite file: the path itself, else experiments/NAME.yaml under the lab home."""
    if path.is_file():
        return path
    alt = paths.home() / "experiments" / (str(path) if str(path).endswith((".yaml", ".yml")) else f"{path}.yaml")
    if alt.is_file():
        return alt
    if path.exists():
        raise LabError(f"{path}: not a file (a suite is a YAML file)")
    raise LabError(f"{path}: suite file not found")


def _check_entry(i: int, entry, where: str, lines: dict, base: Path, read: dict) -> tuple:
    """One `runs:` entry checked: (name, notebook, params class, params, grid, fingerprint).
    `read` keeps each notebook's (params class, fingerprint), so a notebook is read once a suite."""
    p = ("runs", i)
    at = f"{where}:{line_for(lines, p)}"
    if not isinstance(entry, dict):
        raise LabError(f"{at}: runs[{i}]: must be a mapping with keys {sorted(ENTRY_KEYS)}")
    for key in entry:
        if key not in ENTRY_KEYS:
            raise LabError(f"{where}:{lines[p + (key,)]}: runs[{i}].{key}: unknown key "
                           f"(valid: {', '.join(sorted(ENTRY_KEYS))})")
    ename = entry.get("name")
    if not isinstance(ename, str) or not ename:
        raise LabError(f"{at}: runs[{i}].name: required, a non-empty string")
    if len(ename) > MAX_NAME_CHARS or not ename.isprintable():
        raise LabError(f"{where}:{line_for(lines, p + ('name',))}: runs[{i}].name: a name is printable characters, "
                       f"at most {MAX_NAME_CHARS} (the limit MAX_NAME_CHARS, fixed), got {echo(ename)}")
    if "notebook" not in entry:
        raise LabError(f"{at}: runs[{i}] ({ename}).notebook: required")
    try:
        nb = resolve_notebook(entry["notebook"], base=base)
        if nb not in read:
            content = read_notebook(nb)
            parameters_cell(nb, content)  # exactly one, or papermill would put the values above the defaults
            read[nb] = notebook_params_class(nb, content), notebook_fingerprint(nb, content)
        cls, fingerprint = read[nb]
    except LabError as e:
        raise LabError(f"{where}:{line_for(lines, p + ('notebook',))}: runs[{i}] ({ename}).notebook: {e}") from None
    params = entry.get("params") or {}
    grid = entry.get("grid") or {}
    for key, value in (("params", params), ("grid", grid)):
        if not isinstance(value, dict):
            raise LabError(f"{where}:{line_for(lines, p + (key,))}: runs[{i}] ({ename}).{key}: must be a mapping")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise LabError(f"{where}:{line_for(lines, p + ('grid', k))}: runs[{i}] ({ename}).grid.{k}: "
                           "must be a non-empty list of values")
        if k in params:
            raise LabError(f"{where}:{line_for(lines, p + ('grid', k))}: runs[{i}] ({ename}).grid.{k}: "
                           "also set in params; set it in one place")
    return ename, nb, cls, params, grid, fingerprint


def _expand(suite: str, i: int, checked: tuple, where: str, lines: dict, only, seen: set[str],
            notes: list[str] | None) -> list[RunSpec]:
    """An entry's grid as validated runs (those `only` names, when given)."""
    ename, nb, cls, params, grid, fingerprint = checked
    p = ("runs", i)
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        overrides = {**params, **dict(zip(keys, combo))}
        label = ename if not keys else f"{ename}[" + ",".join(f"{k}={v}" for k, v in zip(keys, combo)) + "]"
        if only and ename not in only and label not in only:
            continue
        if len(label) > MAX_RUN_NAME_CHARS or not label.isprintable():
            # grid values are part of the run's name: printable, and short enough for the store
            raise LabError(f"{where}:{line_for(lines, p + ('grid',))}: runs[{i}] ({ename}).grid: the run name "
                           f"{echo(label)} must be printable characters, at most {MAX_RUN_NAME_CHARS} "
                           "(the limit MAX_RUN_NAME_CHARS: MLflow's run names); use shorter grid values")
        if label in seen:
            raise LabError(f"{where}:{line_for(lines, p)}: runs[{i}].name: duplicate run name {echo(label)}")
        seen.add(label)
        # A grid value's errors point at its grid line, a fixed value's at its params line.
        value_lines = {(): line_for(lines, p),
                       **{(k,): line_for(lines, p + ("params", k)) for k in params},
                       **{(k,): line_for(lines, p + ("grid", k)) for k in keys}}
        model = validate_params(cls, overrides, f"{where}", value_lines, (), notes=notes)
        out.append(RunSpec(suite=suite, name=label, notebook=nb, params=model, overrides=overrides,
                           fingerprint=fingerprint))
    return out


def _check_size(entries: list, where: str, lines: dict, max_runs: int) -> None:
    """Refuse a suite whose grids expand to more than max_runs runs, counted before expanding."""
    total = 0
    for i, entry in enumerate(entries):
        grid = entry.get("grid") if isinstance(entry, dict) else None
        n = 1
        if isinstance(grid, dict):
            for v in grid.values():
                n *= len(v) if isinstance(v, list) else 1
        total += n
        if n > max_runs or total > max_runs:
            what = f"runs[{i}].grid expands to {n:,} runs" if n > max_runs else f"the suite expands to {total:,}+ runs"
            raise LabError(f"{where}:{line_for(lines, ('runs', i, 'grid'))}: {what}, over the cap of "
                           f"{max_runs:,} (--max-runs N to allow more)")


NOT_SUITES = ("system",)  # experiments/system/*.yaml are requirements files (llmarch_lab/system), not suites


def suite_files() -> list[Path]:
    root = paths.home() / "experiments"
    return sorted(root.glob("*.yaml")) + sorted(p for p in root.glob("*/*.yaml") if p.parent.name not in NOT_SUITES)
