"""The store under races and bad URIs (issue 29, classes 1, 7, 8): real sqlite stores made by real
processes, a real closed port for an unreachable database. The PostgreSQL URI forms that work are
tested against a real cluster in test_trackserver.py."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from llmarch_lab import LabError, cli
from llmarch_lab.common.procs import free_port
from llmarch_lab.store import tracking


def one_line(rc, err, *needles, code=2):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


HALF_MADE = """
import sqlite3, sys
import mlflow
for name in ("empty", "with_run"):
    db = f"{sys.argv[1]}/{name}.db"
    c = mlflow.MlflowClient(f"sqlite:///{db}")
    if name == "with_run":
        c.create_run(c.create_experiment("kept"))
    c.search_experiments()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_tags (key VARCHAR(250))")
    con.execute("DELETE FROM alembic_version")
    con.commit()
"""


@pytest.fixture(scope="module")
def half_made(tmp_path_factory):
    """Stores as an interrupted migration leaves them (a leftover alembic table, no version row),
    made by another process, as a killed one would have (this process caches no engine for them)."""
    folder = tmp_path_factory.mktemp("half")
    subprocess.run([sys.executable, "-c", HALF_MADE, str(folder)], check=True, timeout=120)
    return folder


def test_a_half_made_empty_store_is_made_again(half_made, tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    shutil.copy(half_made / "empty.db", db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert tracking.require_store(write=True) is True
    tracking.ensure_experiment("after")
    con = sqlite3.connect(db)
    assert [r for r in con.execute("SELECT COUNT(*) FROM alembic_version")] == [(1,)]


def test_a_half_made_store_with_runs_is_named_with_the_fix(half_made, tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    shutil.copy(half_made / "with_run.db", db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    rc = cli.main(["report", "anything"])
    one_line(rc, capsys.readouterr().err, "half-migrated", "_alembic_tmp_tags", "holds 1 runs", f"mv {db}")
    assert db.exists()  # kept for recovery


@pytest.mark.parametrize("argv", [["status", "s"], ["report", "s"], ["ui"], ["list"],
                                  ["system", "choose", "experiments/system/quickstart.yaml"]])
def test_read_commands_never_create_a_store(argv, tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    rc = cli.main(argv)
    err = capsys.readouterr().err
    if argv != ["list"]:
        one_line(rc, err, str(store))
    assert not store.exists()


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_ports_are_validated(port, capsys):
    rc = cli.main(["ui", "--port", port])
    one_line(rc, capsys.readouterr().err, "--port")


@pytest.mark.parametrize("module", ["llmarch_lab.store.trackserver status", "llmarch_lab.labs.guardrails.gateway serve-guard --config x"])
def test_module_command_ports_are_validated(module):
    words = module.split()
    p = subprocess.run([sys.executable, "-m", *words, "--port", "70000"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--port" in p.stderr and "70000 is not a port" in p.stderr, p.stderr


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_an_unreachable_database_store_fails_within_5_s(scheme, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{scheme}://mlflow:secret@127.0.0.1:{free_port()}/mlflow")
    t0 = time.monotonic()
    rc = cli.main(["report", "s"])
    line = one_line(rc, capsys.readouterr().err, "not reachable", scheme + "://mlflow:***@")
    assert time.monotonic() - t0 < 5 and "secret" not in line


def test_an_unknown_database_driver_is_one_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+nodriver://a@127.0.0.1:1/x")
    with pytest.raises(LabError, match="nodriver"):
        tracking.require_store(write=False)
