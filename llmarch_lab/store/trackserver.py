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
import fcntl
import glob
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any, Iterator

from llmarch_lab import LabError, paths
from llmarch_lab.common.files import write_atomic
from llmarch_lab.common.procs import alive, free_port, group_members, port_free, reap

DB = ROLE = "mlflow"
PG_SUPERUSER = "postgres"
STATE = "state.json"
MLFLOW_LOG = "mlflow-server.log"
PG_LOG = "postgres.log"
PASSFILE = "pg.password"
SOCKET_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.NNNNN" goes on top of the folder
# The client's credentials and MLflow's own admin overrides never reach the server process:
# the admin comes from auth.ini only.
_SERVER_ENV_DROP = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                    "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_URI")


# --- PostgreSQL: binaries, the user it runs as, where its files go ------------------------------

def find_pg_bin() -> Path:
    """PostgreSQL's bin folder: $PG_BIN, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH."""
    env = os.environ.get("PG_BIN")
    if env:
        path = Path(env).expanduser()
        if not (path / "initdb").is_file():
            raise LabError(f"PG_BIN={env}: no initdb there (point it at PostgreSQL's bin/, or unset it)")
        return path
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(d).parent.name
        if (Path(d) / "initdb").is_file() and re.fullmatch(r"\d+(\.\d+)?", version):
            found.append((tuple(int(x) for x in version.split(".")), Path(d)))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise LabError("PostgreSQL not found (no initdb in $PG_BIN, /usr/lib/postgresql/*/bin or PATH): "
                   "`make sys-postgresql` installs it (apt-get install postgresql)")


class _PgUser:
    """Who runs PostgreSQL: `postgres` through runuser when we are root, else ourselves."""

    def __init__(self) -> None:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise LabError("running as root and there is no 'postgres' system user for PostgreSQL "
                               "(apt-get install postgresql creates it)") from None
            runuser = shutil.which("runuser")
            if not runuser:
                raise LabError("running as root and runuser is missing (util-linux): PostgreSQL must run as 'postgres'")
            self.prefix = [runuser, "-u", pw.pw_name, "--"]
        else:
            pw = pwd.getpwuid(os.geteuid())
            self.prefix = []
        self.name, self.uid, self.gid = pw.pw_name, pw.pw_uid, pw.pw_gid
        self.gids = set(os.getgrouplist(pw.pw_name, pw.pw_gid))

    def can_traverse(self, path: Path) -> bool:
        """Whether this user can reach `path` (x on it and every folder above it)."""
        for p in (path, *path.parents):
            st = p.stat()
            bit = stat.S_IXUSR if st.st_uid == self.uid else stat.S_IXGRP if st.st_gid in self.gids else stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True

    def own_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        path.chmod(0o700)


def _pg_base(root: Path, user: _PgUser) -> Path:
    """The folder that holds pg/ and pg-socket/: root itself, or a postgres-owned one when root is
    out of that user's reach (or its socket path too long). The choice is kept: root/pg is a real
    folder or a symlink to the other place."""
    link = root / "pg"
    if link.is_symlink():
        base = Path(os.readlink(link)).parent
        if not base.is_dir():  # cleaned away (a reboot, a tmp cleaner): a fresh cluster
            user.own_dir(base)
        return base
    if link.is_dir() or (user.can_traverse(root) and len(str(root / "pg-socket")) + 16 <= SOCKET_MAX):
        return root
    tmp = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path("/tmp")
    base = tmp / f"llmarch-pg-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    if base.is_symlink() or (base.exists() and (not base.is_dir() or base.stat().st_uid != user.uid)):
        raise LabError(f"{base}: exists and is not a folder owned by {user.name} (remove it, or use a --root "
                       f"that {user.name} can reach)")
    user.own_dir(base)
    link.symlink_to(base / "pg")
    return base


# --- small helpers --------------------------------------------------------------------------------

def _root(root: Path | str | None) -> Path:
    return Path(root).expanduser().resolve() if root else paths.home() / ".tracking"


def _read_state(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / STATE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise LabError(f"{root / STATE}: unreadable ({e}); stop any server by hand and delete it") from None


def _write_state(root: Path, state: dict[str, Any]) -> None:
    write_atomic(root / STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte."""
    write_atomic(path, text, private=True)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One start/stop at a time per root (two `make tracking-server` at once start one server)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _tail(path: Path, n: int = 12) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return f"(no {path.name})"
    return " | ".join(lines[-n:]) or f"({path.name} is empty)"


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


def _run(cmd: list[str], what: str, log: Path | None = None, cwd: Path | None = None, input: str | None = None,
         timeout: float = 120) -> None:
    """Run a PostgreSQL tool; a LabError with its output (or the log's tail) when it fails."""
    try:
        if log is not None:
            with open(log, "ab") as out:
                r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                   start_new_session=True, timeout=timeout)
            detail = _tail(log)
        else:
            r = subprocess.run(cmd, capture_output=True, text=True, input=input, cwd=cwd, timeout=timeout)
            detail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-12:])
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no answer within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise LabError(f"{what} failed (exit {r.returncode}): {detail}")


# --- PostgreSQL lifecycle ------------------------------------------------------------------------

def _pg_pid(data: Path) -> int | None:
    """The postmaster's pid from postmaster.pid when that process is alive."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    return pid if alive(pid) else None


def _pg_start(root: Path, state: dict[str, Any], timeout_s: float) -> tuple[int, bool]:
    """Initialise (once) and start the cluster, create role and database; (postmaster pid, started now)."""
    pgbin = find_pg_bin()
    for tool in ("initdb", "pg_ctl", "psql"):
        if not (pgbin / tool).is_file():
            raise LabError(f"{pgbin}: no {tool} (apt-get install postgresql)")
    user = _PgUser()
    base = _pg_base(root, user)
    data, sock = base / "pg", base / "pg-socket"
    state.update(pg_data=str(data), pg_socket=str(sock), pg_bin=str(pgbin), pg_user=user.name)
    if not (data / "PG_VERSION").exists():
        user.own_dir(data)
        user.own_dir(sock)
        t0 = time.perf_counter()
        _run([*user.prefix, str(pgbin / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "-E", "UTF8", "--no-locale",
              "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions"],
             "initdb", log=root / PG_LOG, cwd=base, timeout=max(timeout_s, 60))
        # Appended as root keeps the file's owner (postgres).
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n# llmarch_lab.store.trackserver\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{sock}'\nunix_socket_permissions = 0700\nmax_connections = 200\n")
        state["initdb_s"] = round(time.perf_counter() - t0, 2)
    user.own_dir(sock)  # (re)made: /tmp cleaners and reboots may remove it

    pid, started = _pg_pid(data), False
    if pid is None:
        port = state.get("pg_port")
        if not port or not port_free("127.0.0.1", port):
            port = free_port()
        state["pg_port"] = port
        # pg_ctl without -l: the postmaster keeps our log file as its stdout, so the log can sit
        # where postgres itself could not open it.
        _run([*user.prefix, str(pgbin / "pg_ctl"), "start", "-w", "-t", str(int(max(timeout_s, 10))), "-D", str(data),
              "-o", f"-p {port}"], f"PostgreSQL start (log {root / PG_LOG})", log=root / PG_LOG, cwd=base,
             timeout=timeout_s + 10)
        pid, started = _pg_pid(data), True
        if pid is None:
            raise LabError(f"PostgreSQL did not stay up: {_tail(root / PG_LOG)}")
    elif not state.get("pg_port"):
        state["pg_port"] = int((data / "postmaster.pid").read_text().splitlines()[3])

    password = _role_password(root)
    # Statements come on stdin (not argv); errors are not echoed with their statement into the log.
    sql = (f"SET log_min_error_statement = panic;\n"
           f"SELECT 'CREATE ROLE {ROLE}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}')\\gexec\n"
           f"ALTER ROLE {ROLE} WITH LOGIN PASSWORD '{password}';\n"
           f"SELECT 'CREATE DATABASE {DB} OWNER {ROLE}' WHERE NOT EXISTS "
           f"(SELECT FROM pg_database WHERE datname = '{DB}')\\gexec\n")
    _run([*user.prefix, str(pgbin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p",
          str(state["pg_port"]), "-U", PG_SUPERUSER, "-d", "postgres", "-f", "-"],
         "creating the mlflow role and database", cwd=base, input=sql, timeout=60)
    return pid, started


def _role_password(root: Path) -> str:
    """The `mlflow` role's password from root/pg.password (.pgpass format), made on first use."""
    path = root / PASSFILE
    if path.exists():
        line = path.read_text().strip().splitlines()[0]
        if re.fullmatch(r"127\.0\.0\.1:\*:mlflow:mlflow:[0-9a-f]{32,}", line):
            if stat.S_IMODE(path.stat().st_mode) != 0o600:
                path.chmod(0o600)
            return line.rsplit(":", 1)[1]
    password = secrets.token_hex(24)
    _write_secret(path, f"127.0.0.1:*:{DB}:{ROLE}:{password}\n")
    return password


def _pg_stop(state: dict[str, Any]) -> bool:
    data = Path(state.get("pg_data", ""))
    pid = _pg_pid(data) if state.get("pg_data") else None
    if pid is None:
        return False
    user = _PgUser()
    try:
        _run([*user.prefix, str(Path(state["pg_bin"]) / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w",
              "-t", "30"], "pg_ctl stop", cwd=data.parent, timeout=40)
    except LabError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
    return True


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
    _write_secret(ini, "[mlflow]\n"
                       "default_permission = READ\n"
                       f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
                       f"admin_username = {user}\n"
                       f"admin_password = {password.replace('%', '%%')}\n"  # configparser interpolation
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    key_file = root / "flask.secret"
    if not key_file.exists():
        _write_secret(key_file, secrets.token_hex(32) + "\n")
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
    root = _root(root)
    st = _read_state(root)
    pids = st.get("pids", {})
    pg_pid = _pg_pid(Path(st["pg_data"])) if st.get("pg_data") else None
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
    root = _root(root)
    uri = f"http://{host}:{port}"
    with _locked(root):
        st = _read_state(root)
        running = (st.get("pg_data") and _pg_pid(Path(st["pg_data"])) and group_members(st.get("pids", {}).get("mlflow"))
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
        pg_pid, pg_started = _pg_start(root, st, timeout_s)
        st.update(uri=uri, host=host, port=port, auth=auth, workers=workers, root=str(root),
                  pids={"postgres": pg_pid, "mlflow": None})
        _write_state(root, st)

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
        _write_state(root, st)
        deadline = time.monotonic() + timeout_s
        while not _healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with code {proc.returncode}" if proc.returncode is not None else \
                    f"no /health answer within {timeout_s:.0f} s"
                _mlflow_stop(st)
                if pg_started:
                    _pg_stop(st)
                raise LabError(f"mlflow server {why}; {root / MLFLOW_LOG}: {_tail(root / MLFLOW_LOG)}")
            time.sleep(0.3)
        st["mlflow_start_s"] = round(time.perf_counter() - t0, 2)
        _write_state(root, st)
        if auth:
            _check_admin(uri)
        return _result(root, st, started=True)


def _result(root: Path, st: dict[str, Any], started: bool) -> dict[str, Any]:
    return {"uri": st["uri"], "root": str(root), "pids": dict(st["pids"]), "auth": bool(st.get("auth")),
            "pg_port": st.get("pg_port"), "started": started}


def stop(root: Path | str | None = None) -> bool:
    """Stop the mlflow server (SIGTERM to its process group, SIGKILL after 10 s), then PostgreSQL
    (pg_ctl stop -m fast). Returns whether anything was running."""
    root = _root(root)
    if not (root / STATE).exists():
        return False
    with _locked(root):
        st = _read_state(root)
        was = _mlflow_stop(st)
        was = _pg_stop(st) or was
        if st.get("pids"):
            st["pids"] = {"postgres": None, "mlflow": None}
            _write_state(root, st)
        return was


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.store.trackserver", description=__doc__.splitlines()[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--root", type=Path, default=None, help="Folder of the server (default: <home>/.tracking).")
    ap.add_argument("--port", type=int, default=5001, help="mlflow server port (default 5001).")
    ap.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2).")
    ap.add_argument("--auth", action="store_true",
                    help="Basic auth; the admin is MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.")
    ap.add_argument("--timeout", type=float, default=120, help="Seconds to wait for the server (default 120).")
    a = ap.parse_args(argv)
    try:
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
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
