"""Sizing a candidate: its SLO levels behind the guard, goodput at SLO, replicas, and the latency
predicted at a Poisson arrival rate (open loop: a simulated FCFS queue over the measured requests).
"""

from __future__ import annotations

import math

from llmarch_lab import registry
from llmarch_lab.system.records import Guard, Serving
from llmarch_lab.system.requirements import Requirements


def stream_window_chars() -> int:
    """The guarded gateway's streaming holdback (characters), as gateway.launch defaults it."""
    import inspect

    launch = registry.service("guardrails.launch_gateway")
    return int(inspect.signature(launch).parameters["stream_window_chars"].default)


def chars_per_token(serving: Serving) -> float:
    """Characters per output token of this model, from the serving run's own requests (text is
    cut at 200 characters there, so only requests whose text is shorter count); 4 without data."""
    r = serving.requests
    if r is None or "text" not in r or "output_tokens" not in r:
        return 4.0
    ok = r[r.text.notna() & (r.output_tokens > 0)]
    ok = ok[ok.text.astype(str).str.len() < 200]
    return float(ok.text.astype(str).str.len().sum() / ok.output_tokens.sum()) if len(ok) else 4.0


def _with_guard(level: dict, guard: Guard, serving: Serving | None = None) -> dict:
    """A level's latencies behind the guard: its added check time on TTFT and e2e (p50 to p50,
    p99 to p99) and, when streaming through the gateway, the output holdback: the client sees
    its first token only after `stream_window_chars` characters, i.e. w = window / chars-per-token
    tokens later, so TTFT grows by w x TPOT and the remaining (n - 1 - w) gaps spread over the
    same decode time (TPOT x (n - 1 - w) / (n - 1))."""
    out = dict(level)
    if guard.detector == "none":
        return out
    add50, add99 = guard.added_ms.get("p50", 0.0), guard.added_ms.get("p99", 0.0)
    for k, add in (("ttft_ms_p50", add50), ("ttft_ms_p99", add99), ("e2e_ms_p50", add50), ("e2e_ms_p99", add99)):
        if out.get(k) is not None:
            out[k] = out[k] + add
    n = float((serving.params if serving else {}).get("output_tokens", 0) or 0)
    if serving is not None and n > 2 and out.get("tpot_ms_p50"):
        w = min(n - 2, stream_window_chars() / chars_per_token(serving))
        for q in ("p50", "p99"):
            tpot = out.get(f"tpot_ms_{q}")
            if tpot is None:
                continue
            if out.get(f"ttft_ms_{q}") is not None:
                out[f"ttft_ms_{q}"] += w * tpot
            out[f"tpot_ms_{q}"] = tpot * (n - 1 - w) / (n - 1)
        out["holdback_tokens"] = w
    return out


def level_violations(level: dict, req: Requirements) -> list[tuple[str, float, float]]:
    """[(slo name, measured, limit)] the level breaks."""
    bad = []
    for k, limit in req.slos.latency_items().items():
        v = level.get(k)
        if v is None or v > limit:
            bad.append((k, float("nan") if v is None else v, limit))
    if (level.get("error_rate") or 0.0) > req.slos.error_rate:
        bad.append(("error_rate", level["error_rate"], req.slos.error_rate))
    return bad


def simulate_open_loop(service, servers: int, rate: float, n: int = 20000, seed: int = 0) -> dict:
    """Trace-driven FCFS queue: Poisson arrivals at `rate` req/s onto `servers` parallel slots,
    each request's service drawn from `service` (rows of measured ttft_ms, e2e_ms, tpot_ms of
    real requests). Returns the latency percentiles of the simulated requests (the first 10% are
    the warm-up and left out). Hand-written rather than a simulation library: it is 15 lines of
    heap operations and needs the measured requests, not a fitted distribution."""
    import heapq

    import numpy as np

    from llmarch_lab.common import stats

    rng = np.random.default_rng(seed)
    ttft, e2e, tpot = (np.asarray(service[k], dtype=float) for k in ("ttft_ms", "e2e_ms", "tpot_ms"))
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    pick = rng.integers(0, len(e2e), n)
    free = [0.0] * servers
    wait = np.empty(n)
    for i, (t, j) in enumerate(zip(arrivals, pick)):
        start = max(t, heapq.heappop(free))
        wait[i] = start - t
        heapq.heappush(free, start + e2e[j] / 1000.0)
    keep = slice(n // 10, None)
    w_ms = 1000.0 * wait[keep]
    out = {}
    for name, vals in (("ttft_ms", w_ms + ttft[pick][keep]), ("e2e_ms", w_ms + e2e[pick][keep]),
                       ("tpot_ms", tpot[pick][keep]), ("wait_ms", w_ms)):
        vals = vals[~np.isnan(vals)]
        if len(vals):
            out.update({k.split(".", 1)[1]: v for k, v in stats.percentiles(vals, f"latency.{name}").items()})
    return out


def open_loop(serving: Serving, levels: list[dict], rate: float, guard: Guard | None = None) -> dict | None:
    """Latency at a Poisson arrival rate (req/s) on one replica.

    The closed-loop sweep has no queue in front of the engine; random arrivals also wait. The
    engine is taken as c parallel slots, c = its peak throughput x its single-stream request time
    (1 for llama-cpp-python, more for an engine that batches), and the measured requests of the
    sweep level nearest c are replayed through a simulated FCFS queue (simulate_open_loop). The
    guard's added p50/p99 are added to TTFT and e2e. None when rate >= the peak throughput (no
    steady state) or the run's requests table is missing."""
    pts = sorted(levels, key=lambda lv: lv["level"])
    xmax = max(lv["req_per_s"] for lv in pts)
    if rate >= xmax or serving.requests is None or serving.requests.empty:
        return None
    s1 = (pts[0].get("e2e_ms_p50") or 0.0) / 1000.0 or 1.0 / pts[0]["req_per_s"]
    c = max(1, int(round(xmax * s1)))
    lv = min(pts, key=lambda x: abs(x["level"] - c))
    reqs = serving.requests
    svc = reqs[(reqs.level == lv["level"]) & reqs.e2e_ms.notna() & reqs.ttft_ms.notna()]
    if svc.empty:
        return None
    sim = simulate_open_loop(svc, c, rate)
    out = dict(lv)
    out.update({k: v for k, v in sim.items() if k in lv or k.startswith("wait_")})
    out.update({"level": rate, "req_per_s": rate, "servers": c, "service_level": lv["level"]})
    return _with_guard(out, guard, serving) if guard is not None else out


def size(serving: Serving, guard: Guard, req: Requirements) -> dict:
    """Goodput at SLO, replicas, predicted latency at peak; the binding SLO if no level meets it.

    Replicas: ceil(peak * (1 + headroom) / goodput), then more while the open-loop prediction at
    peak / replicas (open_loop) still breaks a latency SLO."""
    levels = [_with_guard(lv, guard, serving) for lv in serving.levels]
    ok = [lv for lv in levels if not level_violations(lv, req)]
    if not ok:
        first = min(levels, key=lambda lv: lv["level"])
        k, v, limit = level_violations(first, req)[0]
        return {"goodput_rps": 0.0, "replicas": None, "operating": first, "slo_ok": False,
                "slo_violation": f"{k} {v:.4g} > {limit:g} already at level {first['level']:g}",
                "slo_excess_pct": 100.0 * (v / limit - 1.0) if limit else float("inf")}
    goodput = max(ok, key=lambda lv: lv["req_per_s"])["req_per_s"]
    replicas = max(1, math.ceil(req.workload.peak_rps * (1.0 + req.sizing.headroom) / goodput - 1e-9))
    while True:
        operating = open_loop(serving, serving.levels, req.workload.peak_rps / replicas, guard)
        if operating is not None and not [v for v in level_violations(operating, req) if v[0] != "error_rate"]:
            break
        if replicas >= req.sizing.max_replicas:
            break
        replicas += 1
    if operating is None:  # no requests table: the closed-loop level that covers the rate
        operating = max(ok, key=lambda lv: lv["req_per_s"])
    within = replicas <= req.sizing.max_replicas and not level_violations(operating, req)
    return {"goodput_rps": goodput, "replicas": replicas, "operating": operating,
            "per_replica_rps": req.workload.peak_rps / replicas, "slo_ok": within,
            "slo_violation": "" if within else f"open-loop {', '.join(k for k, *_ in level_violations(operating, req))} "
                                               f"still over the SLO at max_replicas {req.sizing.max_replicas}",
            "slo_excess_pct": 0.0 if within else 100.0}

