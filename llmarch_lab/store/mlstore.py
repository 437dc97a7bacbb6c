"""The MLflow store: its client, experiments, and the checks made before any MLflow call."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.store.creation import check_half_made, probe_database, sqlite_lock


def client(uri: str | None = None, create: bool = False):
    """An MlflowClient for `uri`, or for the tracking URI in force now (MLFLOW_TRACKING_URI can
    change within a process: a cached client for "the default" would keep the first store).
    A sqlite store that does not exist yet is created only with `create` (a write); otherwise a
    LabError says nothing has run, so a read never leaves an empty mlflow.db behind."""
    uri = uri or paths.tracking_uri()
    db = paths.sqlite_path(uri)
    if db is not None and not db.exists() and not create:
        raise no_store(uri)
    return _client(uri)


def no_store(uri: str) -> LabError:
    """The one message for a store that does not exist yet (reads never create one)."""
    return LabError(f"no MLflow store at {uri} yet: nothing has run (llmarch-lab run SUITE), "
                    "or MLFLOW_TRACKING_URI points elsewhere")


@functools.lru_cache(maxsize=None)
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    db = paths.sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    # MLflow creates and migrates the database when it first builds the store: one process at a
    # time (two first invocations at once broke the store), and a half-made one is repaired.
    with sqlite_lock(db, uri):
        check_half_made(db, uri)
        try:
            c = MlflowClient(tracking_uri=uri)
            c.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign database, a failed migration
            raise LabError(f"MLflow store {uri} is not usable: {first_line(e)}") from None
    return c


def store_exists(uri: str | None = None) -> bool:
    """False only for a sqlite store whose database does not exist yet (servers and databases: True)."""
    db = paths.sqlite_path(uri or paths.tracking_uri())
    return db is None or db.exists()


def ensure_experiment(name: str) -> str:
    """Get or create an experiment. With a sqlite store, artifacts go beside the database
    (<db folder>/artifacts/<experiment>), not into the current directory; a server decides itself."""
    uri = paths.tracking_uri()
    db = paths.sqlite_path(uri)
    if db is not None:
        _make_dir(db.parent, uri)
    c = client(uri, create=True)
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
    - a database (postgresql://, postgresql+psycopg2://, mysql://): one connection attempt with a
      short timeout (creation.probe_database), before MLflow's retries.
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
    elif "://" in uri and not uri.startswith(("file:", "databricks")):
        probe_database(uri)
    c = client(uri)  # its own LabError (a half-migrated store) goes through as it is
    try:
        c.search_experiments(max_results=1)
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
    c = client(uri)  # its own LabError (a half-migrated store) goes through as it is
    try:
        c.search_experiments(max_results=1)
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
