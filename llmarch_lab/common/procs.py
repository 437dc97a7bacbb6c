"""Process hygiene shared by everything that starts children: parent-death signals, trees, process
groups, liveness and free ports (the one home for these jobs).

A child started with `preexec_fn=pdeathsig` is signalled by the kernel when the thread that
started it ends, including by kill -9; `kill_tree` ends a process and every descendant (a
papermill child's Jupyter kernel runs in its own session, so a process-group kill misses it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil

from llmarch_lab import LabError

PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send `sig` to this process when its parent thread ends; False elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig)) == 0
    except (OSError, AttributeError):
        return False


def pdeathsig() -> None:
    """`preexec_fn` for Popen: SIGKILL the child when the launching thread dies."""
    set_pdeathsig(signal.SIGKILL)


def kill_tree(pid: int | None = None, include_self: bool = True, grace_s: float = 2.0) -> int:
    """SIGTERM a process and all its descendants, SIGKILL what is left after `grace_s`; returns
    how many processes were signalled. pid None: this process (include_self=False: only its
    descendants)."""
    try:
        root = psutil.Process(pid or os.getpid())
        procs = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    if include_self and (pid is not None and pid != os.getpid()):
        procs.append(root)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return len(procs)


def alive(pid: int, started: float | None = None) -> bool:
    """Is process `pid` running (and, given its start time, the same process, not a recycled pid)?"""
    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - float(started)) < 1.0
    except (psutil.NoSuchProcess, ValueError, TypeError):
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a live pid from /proc, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def group_members(pgid: int | None) -> list[int]:
    """Live (non-zombie) processes of process group `pgid` (a server and its workers)."""
    if not pgid:
        return []
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _proc_stat(int(d))
            if s and s[1] == pgid and s[0] not in ("Z", "X"):
                out.append(int(d))
    return out


def reap(pid: int) -> None:
    """Collect the exit status if `pid` is this process's child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


PORT_MIN, PORT_MAX = 1, 65535  # every port a user gives is checked against these (cli ui, trackserver, gateway)


def port_arg(text: str) -> int:
    """An argparse `type=` for a TCP port: an int in PORT_MIN..PORT_MAX, else argparse's one-line
    usage error naming the flag (exit 2)."""
    import argparse

    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a port number") from None
    if not PORT_MIN <= port <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"{port} is not a port ({PORT_MIN}..{PORT_MAX})")
    return port


def port_free(host: str, port: int) -> bool:
    """Can `port` on `host` be bound now?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free loopback port (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports."""
    out: list[int] = []
    while len(out) < n:
        p = free_port()
        if p not in out:
            out.append(p)
    return out


# ---------------------------------------------------------------------- children: start, wait, stop


def spawn(cmd: list[str], log, env: dict, mode: str = "ab") -> subprocess.Popen:
    """Start `cmd` in its own process group, output to `log` (appended; mode "wb": truncated), stdin
    closed. PDEATHSIG: a launcher killed by a signal takes the child with it; it fires when the
    launching THREAD ends, so it is set only from the main thread (elsewhere stop() and the
    child's own parent watch do the job)."""
    main = threading.current_thread() is threading.main_thread()
    with open(log, mode) as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, preexec_fn=pdeathsig if main else None)


def log_tail(logs, n: int = 15) -> str:
    """The last `n` lines of each log file that exists, joined."""
    out: list[str] = []
    for p in logs:
        try:
            out += Path(p).read_text(errors="replace").splitlines()[-n:]
        except OSError:
            pass
    return "\n".join(out)


def wait_healthy(name: str, proc: subprocess.Popen, url: str, deadline: float, logs=(), who: str = "",
                 interval: float = 0.3) -> None:
    """Poll `url` until it answers 200; a LabError (naming the logs, with their tail) when `proc`
    exits first or `deadline` (perf_counter) passes. who: a prefix for the message ("gateway")."""
    import httpx

    where, pre = ", ".join(str(p) for p in logs), f"{who}: " if who else ""
    while True:
        if proc.poll() is not None:
            raise LabError(f"{pre}{name} exited with code {proc.returncode} while starting "
                           f"(logs: {where}): {log_tail(logs, 4).strip()[-500:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.perf_counter() > deadline:
            raise LabError(f"{pre}{name} not healthy at {url} in time (logs: {where})")
        time.sleep(interval)


def stop_group(proc, timeout: float = 20.0) -> None:
    """SIGTERM a child's process group (started with start_new_session), SIGKILL what is left
    after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_all(procs: dict, order=(), timeout: float = 15.0) -> None:
    """Stop each child's process group (name -> Popen): the names in `order` first, then the rest."""
    names = [n for n in order if n in procs] + [n for n in procs if n not in order]
    for n in names:
        stop_group(procs.get(n), timeout)
