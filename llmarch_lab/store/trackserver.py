"""A shared MLflow tracking server on PostgreSQL, started into one folder: no system service.

    make tracking-server                         # .tracking/ in the checkout, http://127.0.0.1:5001
    python -m llmarch_lab.store.trackserver start --root /srv/lab-tracking --port 5001 [--auth]
    export MLFLOW_TRACKING_URI=http://127.0.0.1:5001
    python -m llmarch_lab.store.trackserver status | stop

Several writers (runner workers, Ray or Slurm jobs, colleagues' notebooks) then log to one store
without sqlite's single-writer lock. Everything lives under `root` (default `<home>/.tracking`):

    state.json          ports, pids, the server's command line (no secrets)
    pg/                 the PostgreSQL cluster (initdb on the first start), owned by the server's user
    pg-socket/          its unix socket (trust, reachable by that user and root only)
    pg.password         the `mlflow` role's password in .pgpass format (0600, handed to the
                        server as PGPASSFILE, so it is on no command line)
    artifacts/          artifacts, served by the server (--serve-artifacts: clients need no access)
    postgres.log, mlflow-server.log
    auth.ini, basic_auth.db, flask.secret   with --auth only (0600)

PostgreSQL listens on 127.0.0.1 (a free port, kept across restarts when it is still free) with
scram-sha-256 passwords on TCP. It refuses to run as root: under root, the cluster belongs to the
`postgres` system user and initdb/pg_ctl/psql run through `runuser -u postgres --`. If that user
cannot reach `root` (a 0700 folder on the way, as pytest's /tmp/pytest-of-root), or the socket
path would be too long, pg/ and pg-socket/ go to /var/tmp/llmarch-pg-<hash of root>/ (owned by
postgres, 0700) and root/pg is a symlink to it.

--auth runs MLflow's basic-auth app. The admin is MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
(the same variables the MLflow client sends); MLflow creates that admin in basic_auth.db on the first
auth start only, so a later change of the password is made through MLflow's update-password API.
The password is written only to auth.ini (0600), never printed or logged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

from llmarch_lab import LabError
from llmarch_lab.common.entry import one_line_errors
from llmarch_lab.common.procs import group_members, port_arg, port_free, reap
from llmarch_lab.store.pgcluster import DB, ROLE, find_pg_bin, postmaster_pid, start_postgres, stop_postgres
from llmarch_lab.store.serverstate import (
    MLFLOW_LOG,
    PASSFILE,
    STATE,
    locked,
    log_tail,
    read_state,
    root_dir,
    write_secret,
    write_state,
)

# The client's credentials and MLflow's own admin overrides never reach the server process:
# the admin comes from auth.ini only.
_SERVER_ENV_DROP = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                    "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_URI")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, auth: tuple[str, str] | None = None, timeout: float = 3.0) -> int | None:
    """HTTP status of GET url (no proxies), None when nothing answers."""
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with _NO_PROXY.open(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def _healthy(uri: str) -> bool:
    return _http_status(f"{uri}/health", timeout=2.0) == 200


# --- MLflow server -------------------------------------------------------------------------------

def _auth_files(root: Path) -> dict[str, str]:
    """Write auth.ini (0600) with the admin from the client variables; the server's extra env."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        if not value:
            raise LabError(f"auth: {name} is not set (the basic-auth admin is MLFLOW_TRACKING_USERNAME / "
                           "MLFLOW_TRACKING_PASSWORD)")
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", user):
        raise LabError("auth: MLFLOW_TRACKING_USERNAME may hold only letters, digits and _ . @ + -")
    if len(password) < 12 or password != password.strip() or "\n" in password or "\r" in password:
        raise LabError("auth: MLFLOW_TRACKING_PASSWORD must be at least 12 characters (MLflow's rule), "
                       "with no line breaks and no leading or trailing spaces")
    ini = root / "auth.ini"
    write_secret(ini, "[mlflow]\n"
                      "default_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
                      f"admin_username = {user}\n"
                      f"admin_password = {password.replace('%', '%%')}\n"  # configparser interpolation
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    key_file = root / "flask.secret"
    if not key_file.exists():
        write_secret(key_file, secrets.token_hex(32) + "\n")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": key_file.read_text().strip()}


def server_command(root: Path, pg_port: int, host: str, port: int, workers: int, auth: bool) -> list[str]:
    """The mlflow server command line (no secrets: the role's password comes from PGPASSFILE)."""
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"postgresql+psycopg2://{ROLE}@127.0.0.1:{pg_port}/{DB}",
           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
           "--host", host, "--port", str(port), "--workers", str(workers)]
    return cmd + (["--app-name", "basic-auth"] if auth else [])


def _check_admin(uri: str) -> None:
    creds = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    code = _http_status(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", auth=creds)
    if code in (401, 403):
        raise LabError(f"auth: the server at {uri} rejects MLFLOW_TRACKING_USERNAME/PASSWORD (HTTP {code}): its "
                       "admin was created on the first auth start; change the password through MLflow's API")


def _mlflow_stop(state: dict[str, Any]) -> bool:
    pgid = state.get("pids", {}).get("mlflow")
    if not group_members(pgid):
        if pgid:
            reap(pgid)
        return False
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            reap(pgid)
            if not group_members(pgid):
                return True
            time.sleep(0.1)
    return True


# --- API -----------------------------------------------------------------------------------------

def status(root: Path | str | None = None) -> dict[str, Any]:
    """Where the server in `root` stands: running (both up and /health answering), uri, pids."""
    root = root_dir(root)
    st = read_state(root)
    pids = st.get("pids", {})
    pg_pid = postmaster_pid(Path(st["pg_data"])) if st.get("pg_data") else None
    ml_up = bool(group_members(pids.get("mlflow")))
    uri = st.get("uri")
    healthy = bool(ml_up and uri and _healthy(uri))
    return {"root": str(root), "uri": uri, "running": bool(pg_pid and healthy), "auth": st.get("auth", False),
            "pids": {"postgres": pg_pid, "mlflow": pids.get("mlflow") if ml_up else None},
            "postgres": {"running": pg_pid is not None, "port": st.get("pg_port"), "data": st.get("pg_data")},
            "mlflow": {"running": ml_up, "healthy": healthy, "log": str(root / MLFLOW_LOG)}}


def start(root: Path | str | None = None, port: int = 5001, host: str = "127.0.0.1", auth: bool = False,
          timeout_s: float = 120, workers: int = 2) -> dict[str, Any]:
    """Start PostgreSQL and the mlflow server in `root` (idempotent: a running one is returned as is).

    Returns {"uri", "root", "pids": {"postgres", "mlflow"}, "auth", "pg_port", "started"}."""
    root = root_dir(root)
    uri = f"http://{host}:{port}"
    with locked(root):
        st = read_state(root)
        running = (st.get("pg_data") and postmaster_pid(Path(st["pg_data"])) and group_members(st.get("pids", {}).get("mlflow"))
                   and st.get("uri") and _healthy(st["uri"]))
        if running:
            if (st["uri"], bool(st.get("auth"))) != (uri, auth):
                raise LabError(f"a server is already running from {root} at {st['uri']} (auth={bool(st.get('auth'))}); "
                               "stop it first (python -m llmarch_lab.store.trackserver stop) to change port, host or auth")
            if auth:
                _check_admin(uri)
            return _result(root, st, started=False)

        find_pg_bin()  # before anything else: the one missing piece a fresh machine may have
        _mlflow_stop(st)  # a leftover that does not answer /health
        creds_env = _auth_files(root) if auth else {}
        if not port_free(host, port):
            raise LabError(f"{host}:{port} is taken by another process (not this server): choose another --port "
                           "(make tracking-server TRACKING_PORT=...)")
        (root / "artifacts").mkdir(exist_ok=True)
        pg_pid, pg_started = start_postgres(root, st, timeout_s)
        st.update(uri=uri, host=host, port=port, auth=auth, workers=workers, root=str(root),
                  pids={"postgres": pg_pid, "mlflow": None})
        write_state(root, st)

        cmd = server_command(root, st["pg_port"], host, port, workers, auth)
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_DROP}
        env.update(PGPASSFILE=str(root / PASSFILE), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                   PYTHONUNBUFFERED="1", **creds_env)
        # MLflow's job runner (GenAI scorer jobs, trace rollups) adds seven huey consumers per server:
        # off unless asked for (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true).
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        t0 = time.perf_counter()
        with open(root / MLFLOW_LOG, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=root, start_new_session=True)
        st["pids"]["mlflow"] = proc.pid
        st["command"] = cmd
        write_state(root, st)
        deadline = time.monotonic() + timeout_s
        while not _healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with code {proc.returncode}" if proc.returncode is not None else \
                    f"no /health answer within {timeout_s:.0f} s"
                _mlflow_stop(st)
                if pg_started:
                    stop_postgres(st)
                raise LabError(f"mlflow server {why}; {root / MLFLOW_LOG}: {log_tail(root / MLFLOW_LOG)}")
            time.sleep(0.3)
        st["mlflow_start_s"] = round(time.perf_counter() - t0, 2)
        write_state(root, st)
        if auth:
            _check_admin(uri)
        return _result(root, st, started=True)


def _result(root: Path, st: dict[str, Any], started: bool) -> dict[str, Any]:
    return {"uri": st["uri"], "root": str(root), "pids": dict(st["pids"]), "auth": bool(st.get("auth")),
            "pg_port": st.get("pg_port"), "started": started}


def stop(root: Path | str | None = None) -> bool:
    """Stop the mlflow server (SIGTERM to its process group, SIGKILL after 10 s), then PostgreSQL
    (pg_ctl stop -m fast). Returns whether anything was running."""
    root = root_dir(root)
    if not (root / STATE).exists():
        return False
    with locked(root):
        st = read_state(root)
        was = _mlflow_stop(st)
        was = stop_postgres(st) or was
        if st.get("pids"):
            st["pids"] = {"postgres": None, "mlflow": None}
            write_state(root, st)
        return was


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.store.trackserver", description=__doc__.splitlines()[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--root", type=Path, default=None, help="Folder of the server (default: <home>/.tracking).")
    ap.add_argument("--port", type=port_arg, default=5001, help="mlflow server port (default 5001).")
    ap.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2).")
    ap.add_argument("--auth", action="store_true",
                    help="Basic auth; the admin is MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.")
    ap.add_argument("--timeout", type=float, default=120, help="Seconds to wait for the server (default 120).")
    a = ap.parse_args(argv)
    if a.command == "start":
        t0 = time.perf_counter()
        r = start(a.root, port=a.port, host=a.host, auth=a.auth, timeout_s=a.timeout, workers=a.workers)
        how = f"started in {time.perf_counter() - t0:.1f} s" if r["started"] else "already running"
        print(f"mlflow tracking server {how}: {r['uri']} (PostgreSQL on 127.0.0.1:{r['pg_port']}, "
              f"auth={'basic' if r['auth'] else 'off'}; logs in {r['root']})")
        print(f"export MLFLOW_TRACKING_URI={r['uri']}")
    elif a.command == "stop":
        print("stopped" if stop(a.root) else "not running")
    else:
        print(json.dumps(status(a.root), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
