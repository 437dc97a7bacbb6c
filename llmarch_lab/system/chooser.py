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
- Guard: the guardrails lab's runs for a detector: quality from part=outside (the outside test
  sources) when there is one, else part=injection (cross-validated on the training file), added latency from part=gateway (measured through the gateway) when
  there is one, else part=stack (the guard's own check time, in-process: "composed", no HTTP
  hops). Added to TTFT and to e2e at each percentile (p50 to p50, p99 to p99: a sum of p99s is
  an upper bound for independent parts). Streaming through the gateway, the guard holds output
  back until `stream_window_chars` characters arrived: TTFT grows by that many tokens x TPOT
  and the client's TPOT shrinks accordingly (chars per token from the serving run's answers).
- Replicas = ceil(peak_rps * (1 + headroom) / goodput), raised while the predicted latency at
  peak_rps / replicas still breaks an SLO. Predicted latency at that rate (open_loop): the sweep
  measured a closed loop (no queue); random (Poisson) arrivals also wait. A batching engine is
  simulated as processor sharing over its slots at the sweep's slow-down per concurrency; any
  other as c parallel slots (c = peak throughput x single-stream request time) replaying the
  sweep's own measured requests through a simulated FCFS queue fed by Poisson arrivals.
- Cost per month = replicas * $/hour * hours_per_month; per 1M output (and total) tokens at the
  mean load.
- Quality per floor: of=model from runs that measured the served model; of=guard from the
  guard's runs; of=any the best run of any component (e.g. retrieval). A model's task quality
  behind a guard is composed as q * (1 - guard false-positive rate) (a benign request the guard
  blocks gets no answer), flagged "composed", unless a run measured that model behind that guard
  through the running stack (ops/stack_quality.py: `llmarch-lab system quality`): "measured (stack)".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.system.records import Components, Guard, Serving, model_label
from llmarch_lab.system.requirements import Floor, Requirements
from llmarch_lab.system.sizing import size

OBJECTIVES = {"usd_per_month": "lower", "quality": "higher", "ttft_ms_p99": "lower"}


# ------------------------------------------------------------------------------ quality

def _names(model: str) -> set[str]:
    return {model, Path(model).name, model_label(model)} - {""}


def quality_value(floor: Floor, comps: Components, serving: Serving, guard: Guard) -> tuple[float | None, str, str]:
    """(value, how, run_id): how is 'measured (stack)' (the model behind the guard, asked through the
    running gateway), 'measured', 'composed' or 'not measured'."""
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
                if src.guard_param:  # measured through the running stack: this model behind this guard
                    if p.get(src.guard_param) != guard.detector:
                        continue
                    return v, "measured (stack)", r["run_id"]
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
