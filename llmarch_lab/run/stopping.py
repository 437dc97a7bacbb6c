"""Ctrl-C during a suite: nothing new starts, the notebooks in flight stop, their runs end KILLED,
one line says what was stopped and how to resume; a second Ctrl-C exits at once.

    stopping.reset()                          # a new invocation
    with stopping.on_sigint(suite_path):      # around the executor's loop (main thread only)
        ...                                   # workers: stopping.requested(), stopping.register(proc)
    stopping.mark_killed(client, exp_id, parent_id)   # runs of this invocation left RUNNING
    raise stopping.Interrupted(stopping.summary(...))

Why not KeyboardInterrupt: it lands in the main thread's wait() while the thread pool's shutdown
waits for every queued run, so queued notebooks still started after Ctrl-C (issue 29). The first
SIGINT only sets a flag and stops the children (SIGTERM: `nbchild` ends its kernel and work
folder); each worker sees the flag before it claims a run, and after its notebook returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

STOP = threading.Event()
_children: set[subprocess.Popen] = set()
_lock = threading.Lock()
INTERRUPTED_WHY = "interrupted (Ctrl-C) before it finished"


class Interrupted(Exception):
    """The suite stopped on SIGINT; str() is the one line for the user. Exit status 130."""


def reset() -> None:
    STOP.clear()


def requested() -> bool:
    return STOP.is_set()


def register(proc: subprocess.Popen) -> None:
    """A notebook child in flight: stopped on Ctrl-C (one started after it is stopped at once)."""
    with _lock:
        _children.add(proc)
    if STOP.is_set():
        _terminate(proc)


def unregister(proc: subprocess.Popen) -> None:
    with _lock:
        _children.discard(proc)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()


def request_stop() -> None:
    """What the first Ctrl-C does (also callable directly): stop starting, stop the children."""
    STOP.set()
    with _lock:
        children = list(_children)
    for p in children:
        _terminate(p)


@contextlib.contextmanager
def on_sigint(resume_hint: str):
    """SIGINT handling for the block: the first stops the suite (request_stop) and says so on
    stderr; the second exits with status 130 at once (the notebook children, bound to this process,
    die with it; the next invocation marks their runs KILLED). Outside the main thread (a test, a
    library caller's thread) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if STOP.is_set():
            os.write(2, b"\ninterrupted again: exiting now; the next run marks the unfinished runs KILLED\n")
            os._exit(130)
        os.write(2, ("\nstopping: no new run starts, the running notebooks are being stopped "
                     f"(Ctrl-C again to exit at once); resume with: {resume_hint}\n").encode())
        request_stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def sigint_ignored():
    """Children started in the block inherit SIGINT ignored (Python keeps it so at start-up): for
    helpers that must not die of a terminal's Ctrl-C before the runner stops them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def mark_killed(client, exp_id: str, parent_id: str) -> list[str]:
    """Runs of this invocation (children of parent_id) still RUNNING: marked KILLED, named in the
    error tag. Returns their names."""
    from llmarch_lab.run import claims

    names = []
    for r in client.search_runs([exp_id], f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = '{parent_id}'"):
        claims.set_killed(client, r.info.run_id, INTERRUPTED_WHY)
        names.append(r.data.tags.get("llmarch.name") or r.info.run_name)
    return names


def summary(killed: list[str], n_runs: int, statuses: list[str], resume_hint: str) -> str:
    """The one line: runs stopped (named), not started (no outcome, or NOT STARTED), finished."""
    not_started = n_runs - len(statuses) + statuses.count("NOT STARTED")
    shown = ", ".join(killed[:5]) + (f" and {len(killed) - 5} more" if len(killed) > 5 else "")
    stopped = f"{len(killed)} running run{'s' if len(killed) != 1 else ''} stopped and marked KILLED" + \
        (f" ({shown})" if killed else "")
    return (f"interrupted: {stopped}, {not_started} not started, {statuses.count('FINISHED')} finished; "
            f"resume with: {resume_hint}")


def resume_hint(suite_path) -> str:
    return f"llmarch-lab run {suite_path}"
