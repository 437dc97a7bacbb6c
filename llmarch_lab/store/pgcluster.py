"""The tracking server's PostgreSQL: binaries, the user it runs as, where its files go, start and stop."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from llmarch_lab import LabError
from llmarch_lab.common.procs import alive, free_port, port_free
from llmarch_lab.store.serverstate import PASSFILE, PG_LOG, log_tail, write_secret

DB = ROLE = "mlflow"
PG_SUPERUSER = "postgres"
SOCKET_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.NNNNN" goes on top of the folder


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


def _run(cmd: list[str], what: str, log: Path | None = None, cwd: Path | None = None, input: str | None = None,
         timeout: float = 120) -> None:
    """Run a PostgreSQL tool; a LabError with its output (or the log's tail) when it fails."""
    try:
        if log is not None:
            with open(log, "ab") as out:
                r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                   start_new_session=True, timeout=timeout)
            detail = log_tail(log)
        else:
            r = subprocess.run(cmd, capture_output=True, text=True, input=input, cwd=cwd, timeout=timeout)
            detail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-12:])
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no answer within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise LabError(f"{what} failed (exit {r.returncode}): {detail}")


# --- PostgreSQL lifecycle ------------------------------------------------------------------------

def postmaster_pid(data: Path) -> int | None:
    """The postmaster's pid from postmaster.pid when that process is alive."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    return pid if alive(pid) else None


def start_postgres(root: Path, state: dict[str, Any], timeout_s: float) -> tuple[int, bool]:
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

    pid, started = postmaster_pid(data), False
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
        pid, started = postmaster_pid(data), True
        if pid is None:
            raise LabError(f"PostgreSQL did not stay up: {log_tail(root / PG_LOG)}")
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
    write_secret(path, f"127.0.0.1:*:{DB}:{ROLE}:{password}\n")
    return password


def stop_postgres(state: dict[str, Any]) -> bool:
    data = Path(state.get("pg_data", ""))
    pid = postmaster_pid(data) if state.get("pg_data") else None
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
