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


def home() -> Path:
    env = os.environ.get("LLMARCH_HOME")
    if env:
        return Path(env).expanduser().resolve()
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
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    mlruns_dir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"
