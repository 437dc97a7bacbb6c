"""`llmarch-lab status SUITE`: where each run of a suite stands, from the tracking store alone.

Reads only (nothing is reaped or written), so it is safe next to running invocations on any
host. A RUNNING run whose lease is dead shows as STALE: the next `llmarch-lab run` marks it KILLED
and runs it again. Given the suite file, runs that never started show as PENDING.
`summary_rows` is the table `llmarch-lab run` prints at its end, one row per outcome.
"""

from __future__ import annotations

import time
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.run import claims
from llmarch_lab.store import tracking

ORDER = {"RUNNING": 0, "STALE": 1, "FAILED": 2, "KILLED": 3, "PENDING": 4, "FINISHED": 5}


def suite_name(ref: str) -> tuple[str, list]:
    """(experiment name, the suite's runs if a suite file was named, else [])."""
    from llmarch_lab import config

    p = Path(ref)
    alt = paths.home() / "experiments" / (ref if ref.endswith((".yaml", ".yml")) else f"{ref}.yaml")
    if p.is_file() or alt.is_file():
        s = config.load_suite(p if p.is_file() else alt)
        return s.name, s.runs
    return ref, []


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def rows(ref, all_attempts: bool = False) -> list[dict[str, str]]:
    name, specs = ref if isinstance(ref, tuple) else suite_name(ref)
    tracking.require_store(write=False)
    c = tracking.client(paths.tracking_uri())
    exp = c.get_experiment_by_name(name)
    if exp is None and not specs:
        raise LabError(f"no experiment {name!r} in {paths.tracking_uri()} (has the suite run yet?)")
    runs = c.search_runs([exp.experiment_id], "", max_results=50000,
                         order_by=["attributes.start_time DESC"]) if exp is not None else []
    now = time.time()
    out, seen = [], set()
    for r in runs:
        t = r.data.tags
        if t.get(claims.PARENT_TAG) == "true":
            continue
        ident = t.get("identity", "")
        if not all_attempts and ident in seen:
            continue
        seen.add(ident)
        status = r.info.status
        if status == "RUNNING" and not claims.lease_alive(t, now):
            status = "STALE"
        worker = t.get(claims.WORKER_TAG) or claims.legacy_holder(t)
        host, pid = (worker.rsplit(":", 2) + ["", ""])[:2]
        wall = r.data.metrics.get("latency.run_wall_s")
        if wall is None and status in ("RUNNING", "STALE"):
            wall = now - r.info.start_time / 1000
        out.append({"run": t.get("llmarch.name", r.info.run_name), "status": status,
                    "attempt": t.get(claims.ATTEMPT_TAG, "-"), "host": host or "-", "pid": pid or "-",
                    "heartbeat": _age(claims.heartbeat_age(t, now)) if status in ("RUNNING", "STALE") else "-",
                    "wall": _age(wall), "run_id": r.info.run_id[:8],
                    "note": (t.get(claims.ERROR_TAG, "") or t.get(claims.PHASE_TAG, ""))[:60]})
    for spec in specs:
        if spec.identity() not in seen:
            out.append({"run": spec.name, "status": "PENDING", "attempt": "-", "host": "-", "pid": "-",
                        "heartbeat": "-", "wall": "-", "run_id": "-", "note": ""})
    out.sort(key=lambda row: (ORDER.get(row["status"], 9), row["run"]))
    return out


def title(name, rs: list[dict[str, str]]) -> str:
    name = name[0] if isinstance(name, tuple) else name
    counts: dict[str, int] = {}
    for r in rs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items(), key=lambda kv: ORDER.get(kv[0], 9)))
    return f"suite {name}: {summary or 'no runs'} ({time.strftime('%H:%M:%S')})"


def rich_table(ref, all_attempts: bool = False, rs: list[dict[str, str]] | None = None):
    from llmarch_lab.common.report import rich_rows

    rs = rows(ref, all_attempts) if rs is None else rs
    style = {"FINISHED": "green", "RUNNING": "cyan", "STALE": "yellow", "FAILED": "red", "KILLED": "magenta"}
    table = rich_rows(rs, title(ref, rs), style, "status")
    if not rs:
        table.add_column("run")
    return table


def summary_rows(outcomes: list) -> list[dict[str, str]]:
    """One row per run: name, notebook, status, wall time, the lab's key metrics."""
    rows = []
    for o in outcomes:
        keys = type(o.spec.params).key_metrics
        shown = [f"{k.split('.', 1)[1]}={_fmt(o.metrics[k])}" for k in keys if k in o.metrics]
        rows.append({"run": o.spec.name, "notebook": o.spec.notebook.stem, "status": o.status,
                     "wall_s": f"{o.wall_s:.1f}" if o.wall_s else "-",
                     "key metrics": "  ".join(shown) or (o.error[:100] if o.error else "-")})
    return rows


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
