"""Exactly-once runs: claims and leases kept in the tracking store itself.

A suite's run (its identity: notebook + parameters) may execute only under a **claim**: attempt n
of identity I in experiment E is the MLflow experiment named `.llmarch-claims/E/I/n`. Creating
an experiment whose name exists fails atomically in every MLflow store (a UNIQUE constraint in
SQLite and PostgreSQL, RESOURCE_ALREADY_EXISTS through a tracking server), so of any number of
invocations, on any hosts, that try attempt n, exactly one wins. The claim is deleted (soft)
right after it is made: the name stays reserved, and deleted experiments are hidden from the UI
and from every search the lab makes. (MLflow has no compare-and-set on tags or runs; a name is
the only atomic create it offers through all its stores, hence this use of it.)

The winner creates the attempt's run, RUNNING, with the claim's token, and keeps a **lease** on
it: the tag `llmarch.heartbeat` (epoch seconds) is refreshed every `heartbeat_s()` by the
invocation that holds it and by the worker executing it. A lease is dead when its heartbeat is
older than `lease_ttl_s()` (LLMARCH_LEASE_TTL_S, default 60 s), or at once when every process
that held it ran on this host and is gone. A dead lease's run is marked KILLED by whoever sees it
(`reap`) and the identity is free again: the next invocation claims attempt n+1. A worker that
finds its run no longer RUNNING (its lease was taken) stops its notebook and writes nothing more.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from llmarch_lab.common import env
from llmarch_lab.common.procs import alive

CLAIMS_PREFIX = ".llmarch-claims"
TOKEN_TAG = "llmarch.claim_token"
ATTEMPT_TAG = "llmarch.attempt"
HEARTBEAT_TAG = "llmarch.heartbeat"
WORKER_TAG = "llmarch.worker"  # host:pid:start of the process executing the notebook
HOLDER_TAG = "llmarch.holder"  # host:pid:start of the invocation that claimed the run
PHASE_TAG = "llmarch.phase"  # queued | executing | logging
ERROR_TAG = "llmarch.error"
PARENT_TAG = "llmarch.parent"
TTL_ENV = "LLMARCH_LEASE_TTL_S"


def lease_ttl_s() -> float:
    """$LLMARCH_LEASE_TTL_S (default 60 s); a bad value is a LabError naming it, never the default."""
    return float(env.get(TTL_ENV))


def heartbeat_s() -> float:
    return max(0.2, lease_ttl_s() / 6)


def me() -> str:
    """host:pid:start-time of this process (the start time tells a recycled pid apart)."""
    import psutil

    p = psutil.Process()
    return f"{socket.gethostname()}:{p.pid}:{p.create_time():.3f}"


def _proc_dead_here(who: str) -> bool:
    """True only when `who` (host:pid:start) ran on this host and is gone."""
    try:
        host, pid, started = who.rsplit(":", 2)
        return host == socket.gethostname() and not alive(int(pid), float(started))
    except ValueError:
        return False


def claim_name(exp_id: str, identity: str, attempt: int) -> str:
    return f"{CLAIMS_PREFIX}/{exp_id}/{identity}/{attempt}"


@dataclass
class Claim:
    identity: str
    attempt: int
    token: str
    created_ms: int
    holder: str = ""


def claims_of(client, exp_id: str, identity: str | None = None) -> dict[str, list[Claim]]:
    """Every claim made in an experiment (or for one identity), by identity, attempts ascending."""
    from mlflow.entities import ViewType

    out: dict[str, list[Claim]] = {}
    prefix = f"{CLAIMS_PREFIX}/{exp_id}/" + (f"{identity}/" if identity else "")
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token,
                                         filter_string=f"name LIKE '{prefix}%'")
        for e in page:
            try:
                _, _, ident, n = e.name.split("/")
                attempt = int(n)
            except ValueError:
                continue
            out.setdefault(ident, []).append(Claim(ident, attempt, e.tags.get(TOKEN_TAG, ""),
                                                   int(e.creation_time or 0), e.tags.get(HOLDER_TAG, "")))
        token = page.token
        if not token:
            break
    for v in out.values():
        v.sort(key=lambda c: c.attempt)
    return out


def try_claim(client, exp_id: str, identity: str, attempt: int) -> Claim | None:
    """Attempt `attempt` of `identity` for this process, or None when another got it first."""
    from mlflow.exceptions import MlflowException

    token = secrets.token_hex(8)
    holder = me()
    try:
        eid = client.create_experiment(claim_name(exp_id, identity, attempt),
                                       tags={TOKEN_TAG: token, HOLDER_TAG: holder})
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_ALREADY_EXISTS" or "already exists" in str(e):
            return None
        raise
    try:
        client.delete_experiment(eid)  # hidden; the name stays taken
    except MlflowException:
        pass  # a visible claim is untidy, not wrong
    return Claim(identity, attempt, token, int(time.time() * 1000), holder)


# ----------------------------------------------------------------------------------- leases

def heartbeat_age(tags: dict[str, str], now: float | None = None) -> float | None:
    try:
        return (now or time.time()) - float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        return None


def lease_alive(tags: dict[str, str], now: float | None = None) -> bool:
    """Is a RUNNING run's lease held? Heartbeat within the TTL and not every holder dead here."""
    age = heartbeat_age(tags, now)
    if age is None:  # a run from before leases: only its runner's pid tells
        return not _proc_dead_here(legacy_holder(tags))
    if age > lease_ttl_s():
        return False
    holders = [h for h in (tags.get(HOLDER_TAG), tags.get(WORKER_TAG)) if h]
    return not (holders and all(_proc_dead_here(h) for h in holders))


def dead_reason(tags: dict[str, str], now: float | None = None) -> str:
    """Why a RUNNING run's lease is dead, in words: which process died, or how old its heartbeat is."""
    holders = [h for h in (tags.get(HOLDER_TAG), tags.get(WORKER_TAG)) if h] or [legacy_holder(tags)]
    if all(_proc_dead_here(h) for h in holders):
        return "runner " + " and worker ".join(f"pid {h.rsplit(':', 2)[1]}" for h in dict.fromkeys(holders)) + \
            f" on {socket.gethostname()} died"
    age = heartbeat_age(tags, now)
    return f"last heartbeat {age:.0f} s ago (lease {lease_ttl_s():g} s)" if age is not None else "no heartbeat"


def legacy_holder(tags: dict[str, str]) -> str:
    return (f"{tags.get('llmarch.runner_host', '')}:{tags.get('llmarch.runner_pid', '')}:"
            f"{tags.get('llmarch.runner_started', '')}")


@dataclass
class IdentityState:
    """Where one identity stands in a suite's experiment."""

    identity: str
    state: str  # finished | running | free (never run, failed, killed or stale)
    run: Any = None  # the newest run of the identity (mlflow Run), if any
    finished: Any = None  # its newest FINISHED run
    next_attempt: int = 1
    claims: list[Claim] = field(default_factory=list)


def identity_states(client, exp_id: str, reap_dead: bool = True, announce: Callable | None = None,
                    identity: str | None = None) -> dict[str, IdentityState]:
    """Every identity with a run or a claim in the experiment (or just `identity`). With
    reap_dead, RUNNING runs whose lease is dead are marked KILLED on the way (and
    `announce(line)` hears of each)."""
    where = f"tags.identity = '{identity}'" if identity else ""
    runs = client.search_runs([exp_id], where, max_results=50000, order_by=["attributes.start_time DESC"])
    claims = claims_of(client, exp_id, identity)
    now = time.time()
    by_ident: dict[str, list] = {}
    for r in runs:
        if r.data.tags.get(PARENT_TAG) == "true":
            if reap_dead and r.info.status == "RUNNING" and not lease_alive(r.data.tags, now):
                mark_killed(client, r, dead_reason(r.data.tags, now))
            continue
        ident = r.data.tags.get("identity")
        if ident:
            by_ident.setdefault(ident, []).append(r)
    out: dict[str, IdentityState] = {}
    for ident in set(by_ident) | set(claims):
        rs = by_ident.get(ident, [])
        cl = claims.get(ident, [])
        st = IdentityState(ident, "free", rs[0] if rs else None, claims=cl)
        st.finished = next((r for r in rs if r.info.status == "FINISHED"), None)
        attempts = [c.attempt for c in cl] + [int(r.data.tags.get(ATTEMPT_TAG, 0) or 0) for r in rs]
        st.next_attempt = max(attempts, default=0) + 1
        for r in rs:  # live leases of any attempt (a run from before claims has none)
            if r.info.status != "RUNNING":
                continue
            if lease_alive(r.data.tags, now):
                st.state, st.run = "running", r
            elif reap_dead:
                why = dead_reason(r.data.tags, now)
                mark_killed(client, r, why)
                if announce:
                    announce(f"note: run {r.info.run_name} ({r.info.run_id[:8]}) was left RUNNING: {why}; "
                             "marked KILLED; it runs again unless finished since")
        if st.state != "running" and cl:  # a claim whose run is not created yet is a live lease too
            last = cl[-1]
            has_run = any(r.data.tags.get(TOKEN_TAG) == last.token for r in rs)
            if not has_run and now - last.created_ms / 1000 < lease_ttl_s() and not _proc_dead_here(last.holder):
                st.state = "running"
        if st.state != "running" and st.finished is not None:
            st.state = "finished"
        out[ident] = st
    return out


def mark_killed(client, run, why: str) -> None:
    set_killed(client, run.info.run_id, f"lease lost: {why}; marked KILLED")


def set_killed(client, run_id: str, error: str) -> None:
    """End a run KILLED with its reason in the error tag (a dead lease, a Ctrl-C)."""
    client.set_tag(run_id, ERROR_TAG, error)
    client.set_terminated(run_id, "KILLED")


class LeaseLost(Exception):
    """This process no longer holds the run: someone marked it KILLED after its lease expired."""


class Heartbeat:
    """Keeps the leases of a set of runs: every heartbeat_s(), a run still RUNNING with our token
    gets a fresh heartbeat; one that is not is dropped and `on_lost(run_id)` is called."""

    def __init__(self, client, on_lost: Callable[[str], None] | None = None, name: str = "lease"):
        self.client = client
        self.on_lost = on_lost
        self.runs: dict[str, str] = {}  # run_id -> token
        self.lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def add(self, run_id: str, token: str) -> None:
        with self._lock:
            self.runs[run_id] = token

    def remove(self, run_id: str) -> None:
        with self._lock:
            self.runs.pop(run_id, None)

    def holds(self, run_id: str, token: str) -> bool:
        """A fresh check in the store: is this run still RUNNING under our token?"""
        r = self.client.get_run(run_id)
        ok = r.info.status == "RUNNING" and r.data.tags.get(TOKEN_TAG, "") == token
        if not ok:
            self.lost.add(run_id)
        return ok

    def beat(self) -> None:
        with self._lock:
            items = list(self.runs.items())
        for run_id, token in items:
            try:
                if not self.holds(run_id, token):
                    self.remove(run_id)
                    if self.on_lost:
                        self.on_lost(run_id)
                    continue
                self.client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
            except Exception:  # noqa: BLE001 - a store hiccup: the next beat tries again
                continue

    def _loop(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=heartbeat_s() + 30)
