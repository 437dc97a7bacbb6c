"""Making a store usable once, whoever comes first: a lock beside a SQLite database while MLflow
creates and migrates it, the check for a half-migrated database, and the probe of a database URI
(postgresql://, mysql://) that fails in seconds.

    with sqlite_lock(db, uri):       # <db>.lock: one process at a time creates or migrates
        check_half_made(db, uri)     # an interrupted creation: removed when empty, else named
        ...build the MLflow store...
    probe_database(uri)              # one connection attempt, CONNECT_TIMEOUT_S, one line

Why: two first invocations at once on a missing sqlite store both ran MLflow's migrations on the
same file; one failed (`Online migration expected ... alembic_version`) and left alembic's
`_alembic_tmp_*` tables behind, which broke every later command on that store.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from llmarch_lab import LabError

LOCK_TIMEOUT_S = 300.0  # a migration of a large store can take minutes; a dead holder frees the flock at once
CONNECT_TIMEOUT_S = 4  # an unreachable database store fails within 5 s


@contextlib.contextmanager
def sqlite_lock(db: Path, uri: str):
    """Hold <db>.lock (an flock, released by the kernel if the holder dies) for the block. A folder
    where the lock cannot be made (a read-only store) is not locked: nobody can migrate it there."""
    import filelock

    lock = filelock.FileLock(str(db) + ".lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LabError(f"MLflow store {uri}: another process has held {lock.lock_file} for "
                       f"{LOCK_TIMEOUT_S:g} s while creating or migrating the store; wait for it or stop it") from None
    except OSError:  # read-only folder: there is nothing we could create or migrate there
        yield
        return
    try:
        yield
    finally:
        lock.release()


def check_half_made(db: Path, uri: str) -> None:
    """Under the lock: a database whose creation or migration was interrupted (alembic's
    `_alembic_tmp_*` tables left over, or tables without their one alembic_version row). One that
    holds no run is removed (MLflow creates it again); one with runs is named with the fix."""
    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            versions = con.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0] if "alembic_version" in tables else 0
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return  # not ours to judge here: the store checks name a foreign or corrupt file
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if not tables or (not leftovers and versions == 1):
        return
    what = f"leftover table {leftovers[0]}" if leftovers else f"{versions} alembic_version rows"
    if runs == 0:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db}{suffix}")
        return
    raise LabError(f"MLflow store {uri}: {db} was left half-migrated ({what}) by an interrupted creation or "
                   f"upgrade and holds {runs} runs; keep it for recovery (mv {db} {db}.broken) and rerun, "
                   "or restore a backup")


def probe_database(uri: str) -> None:
    """One connection to a database store (postgresql://, mysql://, ...) with a short timeout and no
    retries, before MLflow's own (which retry for minutes). One line naming the store on failure."""
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(uri)
    except Exception as e:  # noqa: BLE001 - sqlalchemy's ArgumentError and friends: a URI the user typed
        raise LabError(f"MLFLOW_TRACKING_URI={_safe(uri)}: not a database URI ({e})") from None
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    except ModuleNotFoundError as e:
        raise LabError(f"MLflow store {_safe(uri)}: its driver is not installed (No module named {e.name!r}); "
                       "pip install it or name an installed one, e.g. postgresql+psycopg2://") from None
    except Exception as e:  # noqa: BLE001 - NoSuchModuleError (an unknown dialect or driver), ArgumentError
        raise LabError(f"MLflow store {_safe(uri)} (MLFLOW_TRACKING_URI): {str(e).splitlines()[0][:200]} "
                       "(valid: postgresql://, postgresql+psycopg2://, mysql://, sqlite:///PATH, http(s)://)") from None
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - refused, timed out, bad password, no such database
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LabError(f"MLflow store {_safe(uri)} (MLFLOW_TRACKING_URI) is not reachable within "
                       f"{CONNECT_TIMEOUT_S} s: {first}") from None
    finally:
        engine.dispose()


def _safe(uri: str) -> str:
    """The URI without its password, for messages."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not parseable: show the scheme only
        return uri.split("://", 1)[0] + "://..."
