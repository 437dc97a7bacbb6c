"""Every environment variable the lab reads: its type, default and meaning, in one table, checked
in one place. docs/ENVIRONMENT.md is generated from it (`python -m llmarch_lab.common.env`;
a test keeps the file current).

    env.get("LLMARCH_LEASE_TTL_S")   # 60.0, or the set value; a LabError naming the variable if bad
    env.check_all()                  # every variable that is set, at the start of each command

Before, a variable with a value of the wrong type (e.g. LLMARCH_LEASE_TTL_S=soon) silently fell
back to its default; now it is refused in one line naming it, what it holds and what it takes.
Variables the lab sets itself for its child processes (kind "internal") are listed for reference.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError

MAX_VALUE_CHARS = 4096


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # dir | path | file | int | float | choice | flag | uri | text | internal
    default: str
    meaning: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()

    def type_text(self) -> str:
        if self.kind in ("int", "float") and (self.lo is not None or self.hi is not None):
            return f"{self.kind} {_num(self.lo)}..{_num(self.hi)}"
        if self.kind == "choice":
            return " / ".join(self.choices)
        if self.kind == "flag":
            return "flag (1 / 0)"
        return self.kind


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


_ENGINE_PY = "the interpreter of its own venv under .engines/ (its make target builds it)"
VARS: tuple[Var, ...] = (
    Var("LLMARCH_HOME", "dir", "the checkout holding the package, else the current folder",
        "The lab's root: experiments/, notebooks/, data/, mlruns/."),
    Var("LLMARCH_DATA_DIR", "path", "$LLMARCH_HOME/data", "Data files."),
    Var("LLMARCH_CACHE_DIR", "path", "~/.cache/llmarch-lab", "Converted models, embedding caches, engine builds."),
    Var("MLFLOW_TRACKING_URI", "uri", "sqlite:///$LLMARCH_HOME/mlruns/mlflow.db",
        "The MLflow store: sqlite:///PATH, http(s)://HOST:PORT, postgresql://, postgresql+psycopg2://, mysql://."),
    Var("LLMARCH_DEBUG", "flag", "0", "1: library warnings and full tracebacks instead of one-line errors."),
    Var("LLMARCH_KERNEL_START_S", "int", "300", "Seconds papermill waits for a notebook's kernel to start.", 1, 3600),
    Var("LLMARCH_LEASE_TTL_S", "float", "60",
        "Seconds without a heartbeat after which a RUNNING run's lease is dead (its run is marked KILLED and re-run).", 1, 86400),
    Var("LLMARCH_SLURM_CLUSTER", "choice", "slurm where sbatch exists, else local",
        "The Slurm executor's submitit cluster.", choices=("slurm", "local", "debug")),
    Var("RAY_ADDRESS", "text", "a local Ray cluster", "The Ray executor joins this cluster (host:6379 or ray://host:10001)."),
    Var("LLMARCH_VLLM_PYTHON", "file", _ENGINE_PY, "vLLM's interpreter."),
    Var("LLMARCH_LLAMACPP_PYTHON", "file", _ENGINE_PY, "llama-cpp-python's interpreter."),
    Var("LLMARCH_OPENVINO_PYTHON", "file", _ENGINE_PY, "OpenVINO GenAI's interpreter (the openvino engine adapter)."),
    Var("LLMARCH_CTRANSLATE2_PYTHON", "file", _ENGINE_PY, "CTranslate2's interpreter (the ctranslate2 engine adapter and converter)."),
    Var("LLMARCH_LLAMA_SERVER_BIN", "file", "the llama-server build under .engines/", "llama.cpp's llama-server binary."),
    Var("LLMARCH_LITELLM_PYTHON", "file", _ENGINE_PY, "LiteLLM's interpreter (the gateways)."),
    Var("LLMARCH_GARAK_PYTHON", "file", _ENGINE_PY, "garak's interpreter (the guardrails lab's scan)."),
    Var("PG_BIN", "dir", "found under /usr/lib/postgresql", "PostgreSQL's binaries (the shared tracking server)."),
    Var("COLUMNS", "int", "the terminal's width", "Width of printed tables (at least 120 is used).", 1, 10000),
    Var("LLMARCH_RUN_ID", "internal", "", "Set by the runner for a notebook: the MLflow run it logs into."),
    Var("LLMARCH_SUITE", "internal", "", "Set by the runner for a notebook: its suite (the MLflow experiment)."),
    Var("LLMARCH_GUARD_URL", "internal", "", "Set by the guardrails gateway for its LiteLLM hook: the guard service."),
    Var("LLMARCH_GUARD_BLOCK_STYLE", "internal", "refusal", "Set by the guardrails gateway: refusal | error."),
    Var("LLMARCH_GUARD_STREAM_WINDOW", "internal", "0", "Set by the guardrails gateway: characters between output checks."),
    Var("LLMARCH_GUARD_TIMEOUT_S", "internal", "30", "Set by the guardrails gateway: seconds per guard call."),
    Var("LLMARCH_GATEWAY_KEYS", "internal", "", "Set by the guardrails gateway (and the bundle's) for LiteLLM's custom auth: the keys file with per-key limits."),
    Var("LLMARCH_GATEWAY_MAX_BODY_BYTES", "internal", "1000000", "Read by the gateway's custom auth: the largest request body accepted (413 above)."),
    Var("LLMARCH_ROUTER_URL", "internal", "", "Set by the cost gateway for its LiteLLM hook: the router service."),
    Var("LLMARCH_ROUTER_TIMEOUT_S", "internal", "10", "Set by the cost gateway: seconds per router call."),
)
BY_NAME = {v.name: v for v in VARS}
FLAG_TRUE, FLAG_FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
URI_SCHEMES = ("sqlite://", "http://", "https://", "postgresql", "mysql", "mssql", "file:", "databricks")


def _bad(v: Var, raw: str, expected: str) -> LabError:
    shown = raw if len(raw) <= 200 else raw[:197] + "..."
    return LabError(f"${v.name}={shown!r}: expected {expected} (unset it for the default: {v.default or 'none'})")


def parse(v: Var, raw: str):
    """The typed value of `raw` for `v`, or a LabError naming the variable."""
    if len(raw) > MAX_VALUE_CHARS or not raw.isprintable():
        raise _bad(v, raw, f"printable text of at most {MAX_VALUE_CHARS} characters")
    if v.kind in ("int", "float"):
        try:
            x = int(raw.strip(), 10) if v.kind == "int" else float(raw.strip())
        except ValueError:
            raise _bad(v, raw, f"a{'n int' if v.kind == 'int' else ' number'} in {_num(v.lo)}..{_num(v.hi)}") from None
        if x != x or (v.lo is not None and x < v.lo) or (v.hi is not None and x > v.hi):
            raise _bad(v, raw, f"a number in {_num(v.lo)}..{_num(v.hi)}")
        return x
    if v.kind == "flag":
        if raw.strip().lower() not in FLAG_TRUE + FLAG_FALSE:
            raise _bad(v, raw, "1 or 0")
        return raw.strip().lower() in FLAG_TRUE
    if v.kind == "choice" and raw not in v.choices:
        raise _bad(v, raw, "one of " + ", ".join(v.choices))
    if v.kind == "uri" and raw and not raw.startswith(URI_SCHEMES):
        raise _bad(v, raw, "a URI such as sqlite:///PATH, http://HOST:PORT or postgresql://USER@HOST/DB")
    if v.kind == "dir" and raw and not Path(raw).expanduser().is_dir():
        raise _bad(v, raw, f"an existing folder ({'not a directory' if Path(raw).expanduser().exists() else 'no such directory'})")
    if v.kind == "file" and raw and not Path(raw).expanduser().is_file():
        raise _bad(v, raw, "an existing file")
    return raw


def get(name: str):
    """The variable's typed value, or its default (None where the default is computed elsewhere)."""
    v = BY_NAME[name]
    raw = os.environ.get(name)
    if raw is None or (raw == "" and v.kind != "flag"):
        if v.kind in ("int", "float", "flag") and v.default.replace(".", "", 1).isdigit():
            return parse(v, v.default)
        return None  # a default computed where the value is used (a path, the terminal's width)
    return parse(v, raw)


def check_all() -> None:
    """Validate every listed variable that is set (not the internal ones): the first bad one is a LabError."""
    for v in VARS:
        if v.kind != "internal" and os.environ.get(v.name):
            parse(v, os.environ[v.name])


def markdown() -> str:
    rows = ["# Environment variables", "",
            "Generated from llmarch_lab/common/env.py (`python -m llmarch_lab.common.env > docs/ENVIRONMENT.md`).",
            "Every variable below that is set is checked when a command starts; a bad value is refused in one "
            "line naming it. Variables of kind `internal` are set by the lab for its own child processes.", "",
            "| variable | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.type_text()} | {v.default or '-'} | {v.meaning} |" for v in VARS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates docs/ENVIRONMENT.md
    sys.stdout.write(markdown())
