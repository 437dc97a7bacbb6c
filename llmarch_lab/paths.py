"""Where the lab keeps things: its home (the repository), data/, mlruns/ and the model cache.

Every location can be moved with an environment variable, so a shared server or a CI job can
point several checkouts at one store or cache:

    LLMARCH_HOME        the lab's root (default: the checkout that holds this package, else cwd)
    LLMARCH_DATA_DIR    data files (default: $LLMARCH_HOME/data)
    LLMARCH_CACHE_DIR   converted models, embedding caches (default: ~/.cache/llmarch-lab)
    MLFLOW_TRACKING_URI the MLflow store (default: sqlite:///$LLMARCH_HOME/mlruns/mlflow.db)
"""

from __future__ import annotations

import os
from pathlib import Path

from llmarch_lab import LabError


def home() -> Path:
    env = os.environ.get("LLMARCH_HOME")
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise LabError(f"LLMARCH_HOME={env}: {'not a directory' if path.exists() else 'no such directory'} "
                           "(it should be a checkout with experiments/ and notebooks/; unset it to use this one)")
        return path
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "experiments").is_dir() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.cwd().resolve()


def data_dir() -> Path:
    env = os.environ.get("LLMARCH_DATA_DIR")
    return Path(env).expanduser().resolve() if env else home() / "data"


def cache_dir() -> Path:
    env = os.environ.get("LLMARCH_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "llmarch-lab"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def mlruns_dir() -> Path:
    return home() / "mlruns"


def tracking_uri() -> str:
    """The store's URI; nothing is created here (tracking.require_store creates it for a write)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for other stores and in-memory sqlite)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)
