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
  an upper bound for independent parts).
- Replicas = ceil(peak_rps * (1 + headroom) / goodput); the predicted latency at peak is
  interpolated linearly in req/s between the SLO-meeting levels around peak_rps / replicas.
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

from llmarch_lab import LabError
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

    @property
    def label(self) -> str:
        return f"{self.engine}/{Path(self.model).stem}"


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
    from llmarch_lab import tracking

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
    from llmarch_lab import paths, tracking

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
            serving.append(Serving(r["run_id"], r["experiment"], key[1], p.get("engine", ""), p.get("model", ""),
                                   p.get("profile", "concurrent"), p, levels, t.get("gpu", "none") or "none"))
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

def _names(model: str) -> set[str]:
    return {model, Path(model).name, Path(model).stem} - {""}


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

def _with_guard(level: dict, guard: Guard) -> dict:
    out = dict(level)
    add50, add99 = guard.added_ms.get("p50", 0.0), guard.added_ms.get("p99", 0.0)
    for k, add in (("ttft_ms_p50", add50), ("ttft_ms_p99", add99), ("e2e_ms_p50", add50), ("e2e_ms_p99", add99)):
        if out.get(k) is not None:
            out[k] = out[k] + add
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


def at_rate(levels: list[dict], rps: float) -> dict:
    """Latency predicted at `rps` per replica: linear in req/s between the two SLO-meeting levels
    around it (below the lowest level, the lowest level's: a lighter load queues less, so that is
    an upper bound)."""
    pts = sorted(levels, key=lambda lv: lv["req_per_s"])
    lo = [lv for lv in pts if lv["req_per_s"] <= rps]
    hi = [lv for lv in pts if lv["req_per_s"] >= rps]
    if not lo or not hi:
        return dict((hi or lo)[0] if not lo else lo[-1])
    a, b = lo[-1], hi[0]
    if b["req_per_s"] == a["req_per_s"]:
        return dict(b)
    t = (rps - a["req_per_s"]) / (b["req_per_s"] - a["req_per_s"])
    out = {}
    for k, va in a.items():
        vb = b.get(k)
        out[k] = va + t * (vb - va) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else va
    return out


def size(serving: Serving, guard: Guard, req: Requirements) -> dict:
    """Goodput at SLO, replicas, predicted latency at peak; the binding SLO if no level meets it."""
    levels = [_with_guard(lv, guard) for lv in serving.levels]
    ok = [lv for lv in levels if not level_violations(lv, req)]
    if not ok:
        first = min(levels, key=lambda lv: lv["level"])
        k, v, limit = level_violations(first, req)[0]
        return {"goodput_rps": 0.0, "replicas": None, "operating": first, "slo_ok": False,
                "slo_violation": f"{k} {v:.4g} > {limit:g} already at level {first['level']:g}",
                "slo_excess_pct": 100.0 * (v / limit - 1.0) if limit else float("inf")}
    cap = max(ok, key=lambda lv: lv["req_per_s"])
    goodput = cap["req_per_s"]
    replicas = max(1, math.ceil(req.workload.peak_rps * (1.0 + req.sizing.headroom) / goodput - 1e-9))
    per_replica = req.workload.peak_rps / replicas
    operating = at_rate(ok, per_replica)
    return {"goodput_rps": goodput, "replicas": replicas, "operating": operating, "per_replica_rps": per_replica,
            "slo_ok": replicas <= req.sizing.max_replicas, "slo_violation": "" if replicas <= req.sizing.max_replicas
            else f"needs {replicas} replicas, over max_replicas {req.sizing.max_replicas}", "slo_excess_pct": 0.0}


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
    row["quality_how"] = "composed" if "composed" in quality_how else ("measured" if quality_how else "-")
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
