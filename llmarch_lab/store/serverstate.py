"""The tracking server's folder: state.json, 0600 secret files, the start/stop lock, log tails."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Any, Iterator

from llmarch_lab import LabError, paths
from llmarch_lab.common.files import write_atomic

STATE = "state.json"
MLFLOW_LOG = "mlflow-server.log"
PG_LOG = "postgres.log"
PASSFILE = "pg.password"


def root_dir(root: Path | str | None) -> Path:
    return Path(root).expanduser().resolve() if root else paths.home() / ".tracking"


def read_state(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / STATE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise LabError(f"{root / STATE}: unreadable ({e}); stop any server by hand and delete it") from None


def write_state(root: Path, state: dict[str, Any]) -> None:
    write_atomic(root / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte."""
    write_atomic(path, text, private=True)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One start/stop at a time per root (two `make tracking-server` at once start one server)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def log_tail(path: Path, n: int = 12) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return f"(no {path.name})"
    return " | ".join(lines[-n:]) or f"({path.name} is empty)"
