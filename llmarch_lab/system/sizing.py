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
    w_ms = 1000.0 * wait
    return _percentiles(n, w_ms + ttft[pick], w_ms + e2e[pick], tpot[pick], w_ms)


def _percentiles(n: int, ttft, e2e, tpot, wait_ms) -> dict:
    """The simulated requests' percentiles, the first 10% (the warm-up) left out."""
    import numpy as np

    from llmarch_lab.common import stats

    keep = slice(n // 10, None)
    out = {}
    for name, vals in (("ttft_ms", ttft[keep]), ("e2e_ms", e2e[keep]), ("tpot_ms", tpot[keep]), ("wait_ms", wait_ms[keep])):
        vals = vals[~np.isnan(vals)]
        if len(vals):
            out.update({k.split(".", 1)[1]: v for k, v in stats.percentiles(vals, f"latency.{name}").items()})
    return out


def simulate_batching(service, e2e_at: dict, slots: int, rate: float, n: int = 20000, seed: int = 0) -> dict:
    """An engine that batches over `slots` slots, as processor sharing with a concurrency-dependent
    speed: Poisson arrivals at `rate`; each request brings the work of a request served alone
    (a row of `service`: ttft_ms, e2e_ms, tpot_ms measured at concurrency 1); with k requests in
    the engine each progresses at e2e_at[1] / e2e_at[k] of its alone speed (e2e_at: the sweep's
    e2e p50 per concurrency level, interpolated; beyond the top level, time grows in proportion
    to k). A request gets its first token once its prefill share (ttft / e2e alone) is done; more
    than `slots` requests wait FCFS. Event-driven: between two events every speed is constant."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ttft0, e2e0, tpot0 = (np.asarray(service[k], dtype=float) for k in ("ttft_ms", "e2e_ms", "tpot_ms"))
    lv = np.array(sorted(e2e_at), dtype=float)
    ev = np.array([e2e_at[k] for k in sorted(e2e_at)], dtype=float)

    alone = float(np.interp(1, lv, ev))

    def speed(k: int) -> float:
        return alone / (np.interp(k, lv, ev) if k <= lv[-1] else ev[-1] * k / lv[-1])

    arrivals = np.cumsum(rng.exponential(1000.0 / rate, n))  # ms
    pick = rng.integers(0, len(e2e0), n)
    work, first = e2e0[pick].copy(), (ttft0 / e2e0)[pick]
    done, start_t, ttft_t, end_t = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    active: list[int] = []
    queue: list[int] = []
    t, nxt = 0.0, 0
    while nxt < n or active or queue:
        while queue and len(active) < slots:
            j = queue.pop(0)
            start_t[j] = t
            active.append(j)
        sp = speed(len(active)) if active else 0.0
        t_arr = arrivals[nxt] if nxt < n else np.inf
        j_end = min(active, key=lambda j: work[j] - done[j]) if active else -1
        t_end = t + (work[j_end] - done[j_end]) / sp if active else np.inf
        t_new = min(t_arr, t_end)
        for j in active:  # first tokens crossed inside this interval (speed constant here)
            if np.isnan(ttft_t[j]) and done[j] + (t_new - t) * sp >= first[j] * work[j]:
                ttft_t[j] = t + (first[j] * work[j] - done[j]) / sp
            done[j] += (t_new - t) * sp
        if t_end <= t_arr:
            done[j_end] = work[j_end]  # exactly: at large t, t + tiny == t in floating point
            ttft_t[j_end] = t_new if np.isnan(ttft_t[j_end]) else ttft_t[j_end]
        t = t_new
        for j in [j for j in active if done[j] >= work[j] - 1e-9]:
            active.remove(j)
            end_t[j] = t
        if t == t_arr:
            queue.append(nxt)
            nxt += 1
    wait = start_t - arrivals
    decode0 = np.maximum(e2e0[pick] - ttft0[pick], 1e-9)
    tpot = tpot0[pick] * (end_t - ttft_t) / decode0
    return _percentiles(n, ttft_t - arrivals, end_t - arrivals, tpot, wait)


def slot_latencies(serving: Serving, guard: Guard | None, sent_ms, prompt_tokens, output_tokens) -> dict:
    """Per-request client latencies {ttft_ms, e2e_ms, tpot_ms} of llama-server with the serving
    run's slots, its step cost calibrated on the run's sweep (ops/slots.py), for requests sent at
    `sent_ms`; behind the guard (unless None or "none"), its p50 check time before the engine and
    on each released window, and the gateway's stream holdback."""
    import numpy as np

    from llmarch_lab.system.ops import slots

    n_slots = int(serving.params.get("parallel", 1) or 1)
    cost = slots.calibrate(serving.requests, n_slots)
    guarded = guard is not None and guard.detector != "none"
    chk = float(guard.added_ms.get("p50", 0.0)) if guarded else 0.0
    w = stream_window_chars() / chars_per_token(serving) if guarded else 0.0
    sent = np.asarray(sent_ms, dtype=float)
    times, _ = slots.simulate(cost, n_slots, sent + chk, list(prompt_tokens), list(output_tokens))
    out = slots.client_view(times, sent, w, chk)
    out["holdback_tokens"], out["step_cost"] = w, cost
    return out


def _open_loop_slots(serving: Serving, rate: float, guard: Guard | None, n: int = 4000, seed: int = 0) -> dict:
    """Poisson sends at `rate` through the slot model, prompt and output lengths drawn from the
    sweep's own requests; percentiles without the first 10% (warm-up)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reqs = serving.requests[serving.requests.prompt_tokens.notna() & serving.requests.output_tokens.notna()]
    pick = rng.integers(0, len(reqs), n)
    lat = slot_latencies(serving, guard, np.cumsum(rng.exponential(1000.0 / rate, n)),
                         reqs.prompt_tokens.to_numpy(int)[pick], reqs.output_tokens.to_numpy(int)[pick])
    out = _percentiles(n, lat["ttft_ms"], lat["e2e_ms"], lat["tpot_ms"], np.full(n, np.nan))
    if guard is not None and guard.detector != "none":
        out["holdback_tokens"] = lat["holdback_tokens"]
    return out


def open_loop(serving: Serving, levels: list[dict], rate: float, guard: Guard | None = None) -> dict | None:
    """Latency at a Poisson arrival rate (req/s) on one replica.

    The closed-loop sweep has no queue in front of the engine; random arrivals also wait.
    llama-server is simulated step by step (ops/slots.py: each new prompt's prefill stalls every
    decoding slot), its step cost calibrated on the sweep, the guard's check time and stream
    holdback applied per request. Another engine that batches over `parallel` slots (OpenVINO,
    CTranslate2 with parallel > 1) is simulated as processor sharing over that many slots, with
    the sweep's own slow-down per concurrency level (simulate_batching). Any other engine is
    taken as c parallel slots, c = its peak throughput x its single-stream request time (1 for
    llama-cpp-python), and the measured requests of the sweep level nearest c are replayed
    through a simulated FCFS queue. The guard's added p50/p99 are added to TTFT and e2e. None
    when rate >= the peak throughput (no steady state) or the run's requests table is missing."""
    from llmarch_lab.llm.engines import BATCHED

    pts = sorted(levels, key=lambda lv: lv["level"])
    xmax = max(lv["req_per_s"] for lv in pts)
    if rate >= xmax or serving.requests is None or serving.requests.empty:
        return None
    reqs = serving.requests
    reqs = reqs[reqs.e2e_ms.notna() & reqs.ttft_ms.notna()]
    slots = int(serving.params.get("parallel", 1) or 1) if serving.engine in BATCHED else 1
    if serving.engine == "llama-server" and {"prompt_tokens", "output_tokens"} <= set(reqs.columns):
        lv, c = pts[0], slots
        out = dict(lv)
        out.update(_open_loop_slots(serving, rate, guard))
        out.update({"level": rate, "req_per_s": rate, "servers": c, "service_level": lv["level"]})
        return out
    if slots > 1:
        lv, c = pts[0], slots
        alone = reqs[reqs.level == lv["level"]]
        e2e_at = {p["level"]: p["e2e_ms_p50"] for p in pts if p.get("e2e_ms_p50")}
        if alone.empty or not e2e_at:
            return None
        sim = simulate_batching(alone, e2e_at, slots, rate)
    else:
        s1 = (pts[0].get("e2e_ms_p50") or 0.0) / 1000.0 or 1.0 / pts[0]["req_per_s"]
        c = max(1, int(round(xmax * s1)))
        lv = min(pts, key=lambda x: abs(x["level"] - c))
        svc = reqs[reqs.level == lv["level"]]
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

