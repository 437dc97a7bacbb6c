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
from pathlib import Path

import psutil

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
