"""Parameters models, notebooks and suites.

One pydantic model per notebook (a subclass of `LabParams`) is the single source of truth for a
lab's parameters: the notebook's `parameters` cell, `experiments/*.yaml` and the CLI are all
validated against it, and unknown keys are errors. A notebook names its model in its metadata:

    {"metadata": {"llmarch_lab": {"params": "llmarch_lab.labs.quickstart.lab:QuickstartParams"}}}

A suite (`experiments/NAME.yaml`) lists runs; a `grid` expands to the cartesian product:

    suite: quickstart                 # optional, defaults to the file name
    description: what this suite answers
    runs:
      - name: fp32-vs-nf4
        notebook: 10_quantization     # a file in notebooks/ (with or without .ipynb)
        params: {max_tokens: 512}
        grid: {quant: [fp32, nf4]}    # two runs

Every problem is reported as one line naming the file, line and field (`LabError`)."""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models
from llmarch_lab.common.yamlmodel import compose_with_lines, format_validation_error, line_for, read_text_strict

SUITE_KEYS = {"suite", "description", "executor", "runs"}
ENTRY_KEYS = {"name", "notebook", "params", "grid"}


class LabParams(BaseModel):
    """Base of every notebook's parameters model: unknown keys are rejected, defaults validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    lab: ClassVar[str] = "base"  # results-schema tag `lab`
    key_metrics: ClassVar[tuple[str, ...]] = ()  # shown in the suite summary table

    seed: int = Field(0, description="Random seed for sampling, splits and generation.")

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any], where: str = "parameters cell"):
        """Build the model from a notebook's globals (the values the parameters cell assigned)."""
        values = {k: namespace[k] for k in cls.model_fields if k in namespace}
        return validate_params(cls, values, where)


# ------------------------------------------------------------------ shared parameter fields
# One meaning of model, embedder, device, dtype and endpoint fields in every lab: a lab declares
# `device: Device = "cpu"` (or inherits a mixin) instead of its own str with its own help text.

ModelSpec = Annotated[str, Field(min_length=1, description="LLM spec: alias, Hugging Face id or local path.")]
EmbedderSpec = Annotated[str, Field(min_length=1, description="sentence-transformers spec: alias, Hugging Face id or local path.")]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$",
                              description="cpu, cuda, cuda:N, mps or auto (cuda when available).")]
Dtype = Annotated[Literal["auto", "float32", "bfloat16", "float16"],
                  Field(description="Weights / compute dtype: float32, bfloat16, float16 or auto (bf16 on CUDA, else fp32).")]


class LLMFields(LabParams):
    """Mixin: a local causal LM (model, device, dtype)."""

    model: ModelSpec = models.SMOLLM2
    device: Device = "cpu"
    dtype: Dtype = "float32"


class EmbedderFields(LabParams):
    """Mixin: a local sentence embedder (embedder, device)."""

    embedder: EmbedderSpec = models.MINILM
    device: Device = "cpu"


class EndpointFields(LabParams):
    """Mixin: an OpenAI-compatible endpoint (llm.endpoint.Endpoint); the key stays in the environment."""

    base_url: str = Field("", description="OpenAI-compatible base URL ending in /v1, e.g. http://gpu-box:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$", description="Environment variable holding the API key (the key itself is never a parameter, never logged).")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// URL (an OpenAI-compatible base URL ending in /v1)")
        return v


def validate_params(cls: type[LabParams], values: dict[str, Any], where: str,
                    lines: dict | None = None, prefix: tuple = (), notes: list[str] | None = None) -> LabParams:
    """Validate `values` against `cls`; a LabError of one line naming file:line: field.

    Stricter than pydantic's lax mode where it would silently change a value: a bool is never an
    int or a float (YAML `true` is not 1), and a whole float for an int field (8.0) is taken as
    the int, with a note appended to `notes` so the CLI can say so."""
    def at(k):
        line = line_for(lines or {}, prefix + (k,))
        return f"{where}:{line}" if line else where

    for k, v in values.items():
        f = cls.model_fields.get(k)
        if f is None:
            continue
        kinds = _scalar_kinds(f.annotation)
        for item in (v if isinstance(v, list) and list in kinds else [v]):
            if isinstance(item, bool) and bool not in kinds and kinds & {int, float}:
                raise LabError(f"{at(k)}: {k}: {item!r} is a boolean; this parameter is a number")
            if (isinstance(item, float) and int in kinds and float not in kinds and item.is_integer()
                    and notes is not None):
                notes.append(f"{at(k)}: {k}: {item!r} taken as the integer {int(item)}")
    try:
        return cls(**values)
    except ValidationError as err:
        msg = format_validation_error(err, where, lines, prefix, fields=cls.model_fields)
        if "unknown parameter" in msg:
            msg += f" (valid: {', '.join(cls.model_fields)})"
        raise LabError(msg) from None


def _scalar_kinds(annotation) -> set:
    """The plain types an annotation admits: int | None -> {int, NoneType}; list[int] -> {list, int}."""
    from typing import Union, get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return set().union(*(_scalar_kinds(a) for a in get_args(annotation)))
    if origin in (list, tuple, set):
        return {list}.union(*(_scalar_kinds(a) for a in get_args(annotation) if a is not Ellipsis))
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    return {annotation} if isinstance(annotation, type) else set()


# ----------------------------------------------------------------------------------- notebooks

def notebooks_dir() -> Path:
    return paths.home() / "notebooks"


def resolve_notebook(ref: str | Path, base: Path | None = None) -> Path:
    """`00_quickstart`, `00_quickstart.ipynb` or a path -> an existing notebook file."""
    ref = str(ref)
    candidates = [Path(ref)]
    if not ref.endswith(".ipynb"):
        candidates.append(Path(ref + ".ipynb"))
    folders = [base] if base else []
    folders.append(notebooks_dir())
    for c in list(candidates):
        if not c.is_absolute():
            candidates.extend(f / c for f in folders)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    valid = ", ".join(sorted(p.stem for p in notebooks_dir().glob("*.ipynb")))
    raise LabError(f"unknown notebook {ref!r} (valid: {valid or 'none in ' + str(notebooks_dir())})")


def notebook_params_class(nb_path: Path) -> type[LabParams]:
    """The parameters model of the lab the notebook names in its metadata (`llmarch_lab.lab`,
    looked up in the registry; `llmarch_lab.params` = "module:Class" for labs outside it)."""
    from llmarch_lab import registry

    try:
        nb = json.loads(Path(nb_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"{nb_path}: not a readable notebook ({e})") from None
    meta = nb.get("metadata", {}).get("llmarch_lab", {})
    if meta.get("lab") in registry.LABS:
        return registry.params_class(meta["lab"])
    ref = meta.get("params")
    if not ref:
        raise LabError(f"{nb_path}: metadata.llmarch_lab.lab is missing or unknown (got {meta.get('lab')!r}; "
                       f"valid: {', '.join(registry.names())}), and there is no metadata.llmarch_lab.params")
    module = ref.partition(":")[0]
    if module.startswith("llmarch_lab.") and not module.startswith("llmarch_lab.labs."):
        raise LabError(f"{nb_path}: metadata.llmarch_lab.params {ref!r} names a module that moved in House v2; "
                       f"set metadata.llmarch_lab.lab to the lab's name instead (one of {', '.join(registry.names())})")
    return registry.load(ref, where=str(nb_path))


def notebook_fingerprint(nb_path: Path) -> str:
    """Hash of the code and markdown sources only: outputs and execution counts don't count."""
    nb = json.loads(Path(nb_path).read_text())
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        h.update(cell.get("cell_type", "").encode())
        h.update(("".join(src) if isinstance(src, list) else src).encode())
    return h.hexdigest()


def parameters_cell(nb_path: Path) -> dict[str, Any]:
    """The literal assignments of the notebook's single `parameters`-tagged cell."""
    nb = json.loads(Path(nb_path).read_text())
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise LabError(f"{nb_path}: {len(cells)} cells tagged 'parameters' (papermill wants exactly one)")
    src = cells[0]["source"]
    src = "".join(src) if isinstance(src, list) else src
    values = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise LabError(f"{nb_path}: parameters cell: {node.targets[0].id} is not a literal") from None
    return values


# -------------------------------------------------------------------------------------- suites

@dataclass(frozen=True)
class RunSpec:
    """One fully resolved, validated run of a suite."""

    suite: str
    name: str
    notebook: Path
    params: LabParams
    overrides: dict[str, Any] = field(default_factory=dict)  # what the suite set (for display)

    @property
    def lab(self) -> str:
        return type(self.params).lab

    def resolved(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")

    def identity(self) -> str:
        """hash(notebook content, resolved parameters): equal identity -> same result, resume skips."""
        payload = json.dumps({"notebook": notebook_fingerprint(self.notebook),
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


MAX_RUNS = 10_000  # a suite that expands to more is refused before expansion (--max-runs)


def load_suite(path: str | Path, only: list[str] | None = None, max_runs: int = MAX_RUNS,
               notes: list[str] | None = None) -> Suite:
    """Load, expand and validate a suite file. Raises LabError before anything executes.

    `notes` collects lines worth telling the user that are not errors (a float taken as an int)."""
    path = Path(path)
    if not path.is_file():
        alt = paths.home() / "experiments" / (str(path) if str(path).endswith((".yaml", ".yml")) else f"{path}.yaml")
        if alt.is_file():
            path = alt
        elif path.exists():
            raise LabError(f"{path}: not a file (a suite is a YAML file)")
        else:
            raise LabError(f"{path}: suite file not found")
    where = str(path)
    data, lines = compose_with_lines(read_text_strict(path), where)
    if not isinstance(data, dict):
        raise LabError(f"{where}:1: a suite is a mapping with keys {sorted(SUITE_KEYS)}")
    for key in data:
        if key not in SUITE_KEYS:
            raise LabError(f"{where}:{lines[(key,)]}: {key}: unknown key (valid: {', '.join(sorted(SUITE_KEYS))})")
    name = data.get("suite") or path.stem
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise LabError(f"{where}:{line_for(lines, ('suite',))}: suite: must be a plain name, got {name!r}")
    entries = data.get("runs")
    if not isinstance(entries, list) or not entries:
        raise LabError(f"{where}:{line_for(lines, ('runs',))}: runs: must be a non-empty list of runs")

    _check_size(entries, where, lines, max_runs)
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    for o in only or ():
        if o not in names and not any(isinstance(n, str) and o.startswith(n + "[") for n in names):
            raise LabError(f"{where}: --only {o}: no such run (valid: {', '.join(map(str, names))})")
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
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
        if "notebook" not in entry:
            raise LabError(f"{at}: runs[{i}] ({ename}).notebook: required")
        try:
            nb = resolve_notebook(entry["notebook"], base=path.parent)
        except LabError as e:
            raise LabError(f"{where}:{line_for(lines, p + ('notebook',))}: runs[{i}] ({ename}).notebook: {e}") from None
        try:
            cls = notebook_params_class(nb)
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
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            overrides = {**params, **dict(zip(keys, combo))}
            label = ename if not keys else f"{ename}[" + ",".join(f"{k}={v}" for k, v in zip(keys, combo)) + "]"
            if only and ename not in only and label not in only:
                continue
            if label in seen:
                raise LabError(f"{at}: runs[{i}].name: duplicate run name {label!r}")
            seen.add(label)
            # A grid value's errors point at its grid line, a fixed value's at its params line.
            value_lines = {(): line_for(lines, p),
                           **{(k,): line_for(lines, p + ("params", k)) for k in params},
                           **{(k,): line_for(lines, p + ("grid", k)) for k in keys}}
            model = validate_params(cls, overrides, f"{where}", value_lines, (), notes=notes)
            runs.append(RunSpec(suite=name, name=label, notebook=nb, params=model, overrides=overrides))
    if only and not runs:
        raise LabError(f"{where}: --only {','.join(only)}: no such run (valid: {', '.join(map(str, names))})")
    ex = data.get("executor") or {}
    if not isinstance(ex, dict):
        raise LabError(f"{where}:{line_for(lines, ('executor',))}: executor: must be a mapping "
                       f"with keys {', '.join(ExecutorSpec.model_fields)}")
    validate_params(ExecutorSpec, ex, f"{where}", {(k,): line_for(lines, ("executor", k)) for k in ex}, (), notes=notes)
    return Suite(name=name, path=path.resolve(), description=str(data.get("description") or ""), runs=runs,
                 executor=dict(ex))


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
