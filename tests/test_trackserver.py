"""The shared tracking server (llmarch_lab.store.trackserver): a real PostgreSQL cluster and a real
mlflow server in a temp folder, real MLflow clients, concurrent writers in their own processes.

Needs PostgreSQL's binaries (apt-get install postgresql; CI installs it). Without them the server
fixture fails with trackserver's LabError: nothing here is skipped.
"""

import base64
import concurrent.futures
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from llmarch_lab import LabError
from llmarch_lab.store import trackserver

pytestmark = pytest.mark.timeout(600)

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

WRITERS = 8
BATCH_KEYS, BATCH_STEPS, BATCH_SIZE = 10, 20, 50  # 200 metrics in 4 log_batch calls
SINGLES = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(root: Path, state: dict) -> list[str]:
    """Live processes of this server: the mlflow group, the postmaster and its children, anything
    naming the folder or the cluster on its command line."""
    pgid, pg_pid = state.get("mlflow_pgid"), state.get("pg_pid")
    needles = [str(root)] + ([state["pg_data"]] if state.get("pg_data") else [])
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        st, ppid, grp = fields[0], int(fields[1]), int(fields[2])
        if st in "ZX":
            continue
        if int(d) == pg_pid or ppid == pg_pid or grp == pgid or any(n in cmd for n in needles):
            out.append(f"{d} {cmd.strip()[:120]}")
    return out


def _started(root: Path, **kw) -> dict:
    info = trackserver.start(root, port=_free_port(), timeout_s=300, **kw)
    state = json.loads((root / "state.json").read_text())
    info["_procs"] = {"mlflow_pgid": info["pids"]["mlflow"], "pg_pid": info["pids"]["postgres"],
                      "pg_data": state["pg_data"]}
    return info


def _stop_and_check(root: Path, info: dict) -> None:
    try:
        assert trackserver.stop(root) is True
        deadline = time.monotonic() + 10
        while _leftovers(root, info["_procs"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftovers(root, info["_procs"]) == []
        assert trackserver.stop(root) is False
        assert trackserver.status(root)["running"] is False
    finally:
        pg = root / "pg"
        if pg.is_symlink():  # the cluster went to a postgres-owned folder outside root
            shutil.rmtree(Path(os.readlink(pg)).parent, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("trackserver")
    t0 = time.perf_counter()
    info = _started(root)
    print(f"\ncold start (initdb + migrations): {time.perf_counter() - t0:.1f} s")
    yield info
    _stop_and_check(root, info)


def test_roundtrip_params_metrics_artifact(server, tmp_path):
    import mlflow
    import psycopg2

    root = Path(server["root"])
    c = mlflow.MlflowClient(server["uri"])
    exp = c.create_experiment("roundtrip")
    run_id = c.create_run(exp, run_name="one").info.run_id
    c.log_param(run_id, "lr", "0.01")
    for step, loss in enumerate([0.9, 0.5, 0.25]):
        c.log_metric(run_id, "quality.loss", loss, step=step)
    note = tmp_path / "notes.txt"
    note.write_text("served by the tracking server\n")
    c.log_artifact(run_id, str(note), artifact_path="docs")
    c.set_terminated(run_id)

    got = c.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.01"}
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "quality.loss")] == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: clients need no file access
    assert [f.path for f in c.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    back = Path(c.download_artifacts(run_id, "docs/notes.txt", str(tmp_path / "back")))
    assert back.read_text() == note.read_text()
    stored = list((root / "artifacts").rglob("notes.txt"))
    assert len(stored) == 1 and run_id in str(stored[0]) and stored[0].read_text() == note.read_text()

    # The rows are in PostgreSQL (the role's password is in root/pg.password, .pgpass format, 0600).
    pw_file = root / "pg.password"
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    password = pw_file.read_text().strip().rsplit(":", 1)[1]
    with psycopg2.connect(host="127.0.0.1", port=server["pg_port"], dbname="mlflow", user="mlflow",
                          password=password) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("lr", "0.01")]
        cur.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone()[0] == 3
    conn.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_a_postgresql_uri_is_a_store_in_both_forms(server, scheme, monkeypatch, capsys):
    """MLFLOW_TRACKING_URI straight at the server's database: postgresql:// (SQLAlchemy 2.1's
    default driver, psycopg 3) and postgresql+psycopg2:// both work as the lab's store (issue 29)."""
    from llmarch_lab import cli
    from llmarch_lab.store import tracking

    root = Path(server["root"])
    port = json.loads((root / "state.json").read_text())["pg_port"]
    password = (root / "pg.password").read_text().strip().rsplit(":", 1)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{scheme}://mlflow:{password}@127.0.0.1:{port}/mlflow")
    assert tracking.require_store(write=True) is True
    exp = tracking.ensure_experiment(f"pg-{scheme}")
    run = tracking.client().create_run(exp, run_name="direct")
    tracking.client().set_terminated(run.info.run_id)
    assert [r.info.run_name for r in tracking.client().search_runs([exp])] == ["direct"]
    assert cli.main(["status", f"pg-{scheme}"]) == 0
    out = capsys.readouterr()
    assert "direct" in out.out and "FINISHED" in out.out, out.err


def test_start_again_is_idempotent(server):
    again = trackserver.start(server["root"], port=int(server["uri"].rsplit(":", 1)[1]))
    assert again["started"] is False
    assert again["pids"] == server["pids"] and again["uri"] == server["uri"]
    st = trackserver.status(server["root"])
    assert st["running"] and st["pids"] == server["pids"]
    with pytest.raises(LabError, match="already running"):
        trackserver.start(server["root"], port=_free_port())


def _writer(uri: str, experiment_id: str, index: int, sync_dir: str) -> tuple[str, list[str]]:
    """One writer process: a run, 200 metrics in log_batch calls, 50 single log_metric calls."""
    import mlflow
    from mlflow.entities import Metric

    c = mlflow.MlflowClient(uri)
    Path(sync_dir, f"ready-{index}").touch()
    while not Path(sync_dir, "go").exists():  # all writers start together
        time.sleep(0.02)
    errors = []
    run_id = c.create_run(experiment_id, run_name=f"writer-{index}").info.run_id
    now = int(time.time() * 1000)
    batch = [Metric(f"count.k{k}", index * 1e6 + k * 1e3 + s, now, s) for k in range(BATCH_KEYS) for s in range(BATCH_STEPS)]
    for i in range(0, len(batch), BATCH_SIZE):
        try:
            c.log_batch(run_id, metrics=batch[i:i + BATCH_SIZE])
        except Exception as e:  # reported, not raised: the test lists every failure
            errors.append(f"log_batch: {e}")
    for s in range(SINGLES):
        try:
            c.log_metric(run_id, "count.single", index * 1e6 + s, step=s)
        except Exception as e:
            errors.append(f"log_metric: {e}")
    c.set_terminated(run_id)
    return run_id, errors


def test_concurrent_writer_processes_lose_nothing(server, tmp_path):
    import mlflow

    c = mlflow.MlflowClient(server["uri"])
    exp = c.create_experiment("concurrent-writers")
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(WRITERS, mp_context=ctx) as pool:
        futs = [pool.submit(_writer, server["uri"], exp, i, str(tmp_path)) for i in range(WRITERS)]
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("ready-*"))) < WRITERS:
            assert time.monotonic() < deadline, "writers did not start"
            assert not any(f.done() and f.exception() for f in futs), [f.exception() for f in futs if f.done()]
            time.sleep(0.1)
        (tmp_path / "go").touch()
        results = [f.result(timeout=300) for f in futs]

    assert [e for _, errs in results for e in errs] == []
    for index, (run_id, _) in enumerate(results):
        run = c.get_run(run_id)
        assert run.info.status == "FINISHED"
        for k in range(BATCH_KEYS):
            hist = {(m.step, m.value) for m in c.get_metric_history(run_id, f"count.k{k}")}
            assert hist == {(s, index * 1e6 + k * 1e3 + s) for s in range(BATCH_STEPS)}
        hist = {(m.step, m.value) for m in c.get_metric_history(run_id, "count.single")}
        assert hist == {(s, index * 1e6 + s) for s in range(SINGLES)}
    assert len({r for r, _ in results}) == WRITERS
    assert "database is locked" not in (Path(server["root"]) / "mlflow-server.log").read_text()


def test_basic_auth(tmp_path_factory, monkeypatch):
    import mlflow
    import requests

    root = tmp_path_factory.mktemp("trackserver-auth")
    user, password = "lab-admin", "pw-" + secrets.token_hex(12)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    with pytest.raises(LabError, match="MLFLOW_TRACKING_PASSWORD"):
        trackserver.start(root, port=_free_port(), auth=True)
    assert not (root / "state.json").exists()  # nothing was started
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    info = _started(root, auth=True)
    try:
        uri = info["uri"]
        search = f"{uri}/api/2.0/mlflow/experiments/search"
        no_proxy = {"http": None, "https": None}
        assert requests.get(search, params={"max_results": 1}, proxies=no_proxy, timeout=30).status_code == 401
        assert requests.get(search, params={"max_results": 1}, auth=(user, "wrong-password-123"),
                            proxies=no_proxy, timeout=30).status_code == 401
        assert requests.get(search, params={"max_results": 1}, auth=(user, password), proxies=no_proxy,
                            timeout=30).status_code == 200

        c = mlflow.MlflowClient(uri)  # credentials from MLFLOW_TRACKING_USERNAME / PASSWORD
        exp = c.create_experiment("authed")
        run_id = c.create_run(exp).info.run_id
        c.log_metric(run_id, "count.x", 1.0)
        assert c.get_run(run_id).data.metrics == {"count.x": 1.0}
        assert trackserver.start(root, port=int(uri.rsplit(":", 1)[1]), auth=True)["started"] is False

        ini = root / "auth.ini"
        assert stat.S_IMODE(ini.stat().st_mode) == 0o600 and password in ini.read_text()
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        for f in [*root.rglob("*.log"), root / "state.json"]:
            text = f.read_text(errors="replace")
            assert password not in text and basic not in text, f
        state = json.loads((root / "state.json").read_text())
        assert state["auth"] is True and "--app-name" in state["command"]
    finally:
        _stop_and_check(root, info)
