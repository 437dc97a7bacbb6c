"""The system chooser: candidate systems composed from measured runs, sized, priced, filtered by
the requirements, with a Pareto front, one recommendation and why each runner-up lost.

    req = requirements.load("experiments/system/support_assistant.yaml")
    comps = components(req)          # serving sweeps, guards, quality runs from MLflow
    ch = choose(req, comps)          # Choice: candidates table, front, recommended row, reasons
    ch.candidates                    # one row per engine x model x guard x hardware

How a candidate is computed (every rule below is also printed in the report):
- Serving: a finished serving-lab run's per-level sweep (`*.sweep.*` series, step = level). A
  level meets the SLOs when every latency SLO set, with the guard's added latency, holds and its
  error rate is within the SLO. Per-replica goodput at SLO = the highest req/s among those levels.
- Guard: the guardrails lab's runs for a detector: quality from part=injection (cross-validated
  on the training file), added latency from part=gateway (measured through the gateway) when
  there is one, else part=stack (the guard's own check time, in-process: "composed", no HTTP
  hops). Added to TTFT and to e2e at each percentile (p50 to p50, p99 to p99: a sum of p99s is
  an upper bound for independent parts). Streaming through the gateway, the guard holds output
  back until `stream_window_chars` characters arrived: TTFT grows by that many tokens x TPOT
  and the client's TPOT shrinks accordingly (chars per token from the serving run's answers).
- Replicas = ceil(peak_rps * (1 + headroom) / goodput), raised while the predicted latency at
  peak_rps / replicas still breaks an SLO. Predicted latency at that rate (open_loop): the sweep
  measured a closed loop (no queue); random (Poisson) arrivals also wait. The engine is taken as
  c parallel slots (c = peak throughput x single-stream request time) and the sweep's own
  measured requests are replayed through a simulated FCFS queue fed by Poisson arrivals.
- Cost per month = replicas * $/hour * hours_per_month; per 1M output (and total) tokens at the
  mean load.
- Quality per floor: of=model from runs that measured the served model; of=guard from the
  guard's runs; of=any the best run of any component (e.g. retrieval). A model's task quality
  behind a guard is composed as q * (1 - guard false-positive rate) (a benign request the guard
  blocks gets no answer); no run here measured a model and a guard together, so such values are
  flagged "composed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from llmarch_lab import LabError, registry
from llmarch_lab.store import tracking
from llmarch_lab.system.requirements import Floor, Requirements

SWEEP_KEYS = ("latency.ttft_ms_p50", "latency.ttft_ms_p99", "latency.tpot_ms_p50", "latency.tpot_ms_p99",
              "latency.e2e_ms_p50", "latency.e2e_ms_p99", "throughput.req_per_s", "throughput.output_tok_per_s",
              "errors.error_rate")
OBJECTIVES = {"usd_per_month": "lower", "quality": "higher", "ttft_ms_p99": "lower"}


# ------------------------------------------------------------------------------ components

@dataclass
class Serving:
    run_id: str
    experiment: str
    run_name: str
    engine: str
    model: str
    profile: str
    params: dict
    levels: list[dict]  # {level, ttft_ms_p50, ..., req_per_s, error_rate}
    gpu: str = "none"
    requests: object = None  # DataFrame: the run's per-request table (level, ttft_ms, e2e_ms, tpot_ms)

    @property
    def label(self) -> str:
        return f"{self.engine}/{model_label(self.model)}"


@dataclass
class Guard:
    detector: str  # "none" = no guard
    f1_run: dict | None = None  # guardrails part=injection run
    latency_run: dict | None = None  # part=gateway or part=stack run
    latency_kind: str = ""  # "gateway (measured)" | "stack (composed)" | ""
    added_ms: dict = field(default_factory=dict)  # {p50, p99}
    fpr: float = 0.0

    @property
    def label(self) -> str:
        return "no guard" if self.detector == "none" else f"guard:{self.detector}"


@dataclass
class Components:
    serving: list[Serving]
    guards: list[Guard]
    runs: list[dict]  # every finished run read (for quality lookups and links)
    experiments: dict[str, str]  # experiment name -> id (for links)


def _sweep(run_id: str) -> list[dict]:
    series = {k: dict(tracking.metric_history(run_id, k.replace(".", ".sweep.", 1))) for k in SWEEP_KEYS}
    steps = sorted(series["throughput.req_per_s"])
    out = []
    for s in steps:
        row = {"level": s}
        for k, v in series.items():
            row[k.split(".", 1)[1]] = v.get(s)
        out.append(row)
    return out


def components(req: Requirements) -> Components:
    """Read the store: every serving run with a sweep, every injection guard, every finished run."""
    from llmarch_lab import paths

    if not tracking.require_store(write=False):
        raise LabError(f"no tracking store at {paths.tracking_uri()}: run the suites the requirements "
                       "read first (e.g. llmarch-lab run experiments/system_inputs.yaml)")
    runs = [r for r in tracking.search_many(req.experiments) if r["tags"].get("llmarch.parent") != "true"]
    c = tracking.client(paths.tracking_uri())
    exps = {e.name: e.experiment_id for e in c.search_experiments(max_results=10000)}
    serving, seen = [], set()
    for r in runs:  # newest first: the newest finished run of each (experiment, run name)
        p, t = r["params"], r["tags"]
        if t.get("lab") != "serving" or p.get("engine") == "external":
            continue
        if p.get("profile", "concurrent") not in ("concurrent", "synchronous"):
            continue  # open-loop levels are rates: sized the same way, but left out until a run needs it
        key = (r["experiment"], t.get("llmarch.name", r["name"]))
        if key in seen:
            continue
        seen.add(key)
        levels = [lv for lv in _sweep(r["run_id"]) if (lv.get("req_per_s") or 0) > 0]
        if levels:
            try:
                reqs = tracking.load_table(r["run_id"], "requests")
            except LabError:
                reqs = None
            serving.append(Serving(r["run_id"], r["experiment"], key[1], p.get("engine", ""), p.get("model", ""),
                                   p.get("profile", "concurrent"), p, levels, t.get("gpu", "none") or "none", reqs))
    return Components(serving, _guards(runs), runs, exps)


def _guards(runs: list[dict]) -> list[Guard]:
    guards: dict[str, Guard] = {}
    for r in runs:  # newest first
        p, m = r["params"], r["metrics"]
        if r["tags"].get("lab") != "guardrails":
            continue
        part = p.get("part")
        if part == "injection" and "quality.injection_f1" in m:
            g = guards.setdefault(p.get("detector", "?"), Guard(p.get("detector", "?")))
            if g.f1_run is None:
                g.f1_run, g.fpr = r, float(m.get("errors.injection_fpr", 0.0))
        elif part in ("gateway", "stack"):
            g = guards.setdefault(p.get("stack_detector", "?"), Guard(p.get("stack_detector", "?")))
            if part == "gateway" and "latency.gateway_added_ttft_ms_p50" in m and g.latency_kind != "gateway (measured)":
                g.latency_run, g.latency_kind = r, "gateway (measured)"
                g.added_ms = {"p50": m["latency.gateway_added_ttft_ms_p50"], "p99": m["latency.gateway_added_ttft_ms_p99"]}
            elif part == "stack" and "latency.guard_ms_p50" in m and g.latency_run is None:
                g.latency_run, g.latency_kind = r, "stack (composed)"
                g.added_ms = {"p50": m["latency.guard_ms_p50"], "p99": m["latency.guard_ms_p99"]}
    # A guard is a candidate only when both its quality and its latency were measured.
    return [Guard("none")] + [g for g in guards.values() if g.f1_run is not None and g.latency_run is not None]


# ------------------------------------------------------------------------------ quality

def model_label(model: str) -> str:
    """A model spec as people read it: the alias, or a file's name without .gguf (not Path.stem:
    'qwen2.5-coder-0.5b-instruct' has no suffix to strip)."""
    return Path(model).name.removesuffix(".gguf")


def _names(model: str) -> set[str]:
    return {model, Path(model).name, model_label(model)} - {""}


def quality_value(floor: Floor, comps: Components, serving: Serving, guard: Guard) -> tuple[float | None, str, str]:
    """(value, how, run_id): how is 'measured', 'composed' or 'not measured'."""
    belongs = floor.belongs_to()
    best: tuple[float, str] | None = None
    for src in floor.resolved_sources():
        for r in comps.runs:  # newest first: the newest matching run wins for model/guard floors
            p = r["params"]
            if r["tags"].get("lab") != src.lab or src.metric not in r["metrics"]:
                continue
            if any(str(p.get(k)) != v for k, v in src.params.items()):
                continue
            v = float(r["metrics"][src.metric])
            if belongs == "model":
                if not src.model_param or not (_names(p.get(src.model_param, "")) & _names(serving.model)):
                    continue
                return (v * (1.0 - guard.fpr), "composed", r["run_id"]) if guard.detector != "none" \
                    else (v, "measured", r["run_id"])
            if belongs == "guard":
                if guard.detector == "none" or not src.guard_param or p.get(src.guard_param) != guard.detector:
                    continue
                return v, "measured", r["run_id"]
            better = best is None or (v > best[0] if floor.min is not None else v < best[0])
            if better:
                best = (v, r["run_id"])
    if best is not None:
        return best[0], "composed", best[1]
    return None, "not measured", ""


# ------------------------------------------------------------------------------ sizing

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


# ------------------------------------------------------------------------------ the choice

@dataclass
class Choice:
    req: Requirements
    comps: Components
    candidates: object  # DataFrame, one row per candidate
    front: list  # index labels on the Pareto front
    recommended: int | None  # index label, None = infeasible
    reasons: dict  # index label -> why it lost (or "recommended")
    binding: str = ""  # infeasible: the constraint that binds the nearest candidate
    nearest: int | None = None

    @property
    def feasible(self) -> bool:
        return self.recommended is not None

    def row(self, i=None):
        return self.candidates.loc[self.recommended if i is None else i]


def choose(req: Requirements, comps: Components):
    import pandas as pd

    from llmarch_lab.common import stats

    if not comps.serving:
        raise LabError(f"{req.path}: no finished serving-lab run with a concurrency sweep in "
                       f"{', '.join(req.experiments) if req.experiments else 'the store'}: run one first "
                       "(e.g. llmarch-lab run experiments/system_inputs.yaml --only serve)")
    measured_hw = [h for h in req.hardware if h.measured_here]
    guards = [g for g in comps.guards if not req.safety.guards or g.detector != "none"]
    rows = []
    for s in comps.serving:
        for g in guards:
            for hw in measured_hw:
                rows.append(_candidate(req, comps, s, g, hw))
    if not rows and req.safety.guards:
        raise LabError(f"{req.path}: safety.guards requires {', '.join(req.safety.guards)}, but no guard has both "
                       "a guardrails part=injection run and a part=stack/gateway run in the store")
    df = pd.DataFrame(rows)
    objectives = {k: v for k, v in OBJECTIVES.items() if df[k].notna().any()}
    front = stats.pareto_front(df[df.feasible], objectives) if df.feasible.any() else []
    df["pareto"] = df.index.isin(front)
    ch = Choice(req, comps, df, front, None, {})
    _decide(ch)
    return ch


def _candidate(req: Requirements, comps: Components, s: Serving, g: Guard, hw) -> dict:
    sz = size(s, g, req)
    op = sz["operating"]
    w = req.workload
    reps = sz["replicas"]
    usd_month = reps * hw.usd_per_hour * req.sizing.hours_per_month if reps else float("nan")
    month_s = req.sizing.hours_per_month * 3600.0
    out_tok = w.mean_rps * w.output_tokens * month_s
    all_tok = w.mean_rps * (w.output_tokens + w.prompt_tokens) * month_s
    row = {"system": f"{s.label} + {g.label} on {hw.name}", "engine": s.engine, "model": s.model, "guard": g.detector,
           "hardware": hw.name, "replicas": reps, "goodput_rps_per_replica": sz["goodput_rps"],
           "operating_level": op["level"], "ttft_ms_p50": op.get("ttft_ms_p50"), "ttft_ms_p99": op.get("ttft_ms_p99"),
           "tpot_ms_p50": op.get("tpot_ms_p50"), "tpot_ms_p99": op.get("tpot_ms_p99"), "e2e_ms_p99": op.get("e2e_ms_p99"),
           "error_rate": op.get("error_rate"), "usd_per_month": usd_month,
           "usd_per_1m_output_tokens": usd_month / out_tok * 1e6 if reps else float("nan"),
           "usd_per_1m_tokens": usd_month / all_tok * 1e6 if reps else float("nan"),
           "serving_run": s.run_id, "serving_experiment": s.experiment, "guard_latency": g.latency_kind or "-",
           "guard_f1_run": g.f1_run["run_id"] if g.f1_run else "", "guard_latency_run": g.latency_run["run_id"] if g.latency_run else "",
           "per_replica_rps": sz.get("per_replica_rps")}
    fails, quality_how = [], []
    if not sz["slo_ok"]:
        fails.append(("latency", sz["slo_violation"], sz["slo_excess_pct"]))
    for i, f in enumerate(req.quality):
        v, how, rid = quality_value(f, comps, s, g)
        row[f"q{i}"] = v
        row[f"q{i}_how"] = how
        row[f"q{i}_run"] = rid
        quality_how.append(how)
        if not f.ok(v):
            gap = abs(v - f.bound()) / abs(f.bound()) * 100 if v is not None and f.bound() else float("inf")
            fails.append(("quality", f.shortfall(v), gap))
    if reps and usd_month > req.budget_usd_month:
        fails.append(("budget", f"${usd_month:,.2f}/month > budget ${req.budget_usd_month:,.2f} "
                                f"(by ${usd_month - req.budget_usd_month:,.2f})",
                      100.0 * (usd_month / req.budget_usd_month - 1.0)))
    row["quality"] = row.get("q0")
    row["quality_how"] = quality_how[0] if quality_how else "-"  # of the primary floor (the plots' axis)
    row["feasible"] = not fails
    row["violations"] = "; ".join(f[1] for f in fails)
    row["violation_total_pct"] = sum(min(f[2], 1e6) for f in fails)
    row["binding"] = max(fails, key=lambda f: f[2])[0] if fails else ""
    row["workload_risk"] = _workload_risk(s, req)
    return row


def _workload_risk(s: Serving, req: Requirements) -> str:
    out = []
    for name, want in (("input_tokens", req.workload.prompt_tokens), ("output_tokens", req.workload.output_tokens)):
        try:
            got = float(s.params.get(name, "nan"))
        except ValueError:
            continue
        if got == got and abs(got - want) / want > req.workload.tolerance:
            out.append(f"run {name}={got:g} vs workload {want}")
    return "; ".join(out)


def _decide(ch: Choice) -> None:
    df = ch.candidates
    feas = df[df.feasible]
    if len(feas):
        # Cheapest; within 2% of the cheapest (noise in a measured goodput), the higher primary
        # quality, then the lower TTFT p99.
        cheapest = feas.usd_per_month.min()
        near = feas[feas.usd_per_month <= cheapest * 1.02]
        order = near.sort_values(["quality", "ttft_ms_p99"], ascending=[False, True], na_position="last")
        ch.recommended = order.index[0]
    else:
        ch.nearest = df.violation_total_pct.idxmin()
        ch.binding = df.loc[ch.nearest, "binding"]
    best = ch.recommended
    for i, r in df.iterrows():
        if i == best:
            ch.reasons[i] = "recommended: cheapest feasible" + (" (ties broken by quality, then TTFT p99)" if len(df) > 1 else "")
        elif not r.feasible:
            ch.reasons[i] = "infeasible: " + r.violations
        else:
            b = df.loc[best]
            dc = r.usd_per_month - b.usd_per_month
            bits = []
            if dc > 0:
                bits.append(f"costs ${dc:,.2f}/month more (+{100 * dc / b.usd_per_month:.0f}%)")
            if r.quality is not None and b.quality is not None and r.quality == r.quality and r.quality < b.quality:
                bits.append(f"lower {ch.req.quality[0].name if ch.req.quality else 'quality'} "
                            f"({r.quality:.3g} vs {b.quality:.3g})")
            if (r.ttft_ms_p99 or 0) > (b.ttft_ms_p99 or 0):
                bits.append(f"slower TTFT p99 ({r.ttft_ms_p99:.0f} vs {b.ttft_ms_p99:.0f} ms)")
            ch.reasons[i] = "feasible, lost: " + ("; ".join(bits) or "equal on cost; later in the tie-break")
