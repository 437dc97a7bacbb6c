"""Autoscaling, simulated (llmarch_lab/system/ops/autoscale.py) from measured inputs: an HPA on
waiting requests per replica and the bundle's (requests in flight per replica) against fixed peak sizing, over a
diurnal trace; one table, a plot, MLflow.

    .venv/bin/python benchmarks/system_autoscale.py                       # support assistant's traffic
    .venv/bin/python benchmarks/system_autoscale.py --scale 20 --plot docs/results/system/autoscale.png

Inputs: the newest FINISHED serving run of --engine/--model in --experiment (its sweep: goodput =
the highest requests/s among levels whose TTFT p99 meets the requirements' SLO; that level's TTFT
p99 is subtracted from the SLO to give the queueing budget; latency.engine_start_s), and the
requirements file (mean and peak req/s, TTFT SLO, the first hardware entry's price, headroom).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")


def measured(experiment: str, engine: str, model: str, slo_ms: float) -> dict:
    from llmarch_lab import LabError
    from llmarch_lab.store import mlstore

    c = mlstore.client()
    exp = c.get_experiment_by_name(experiment)
    runs = [r for r in (c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=500,
                                      order_by=["attributes.start_time DESC"]) if exp else [])
            if r.data.params.get("engine") == engine and r.data.params.get("model") == model]
    if not runs:
        raise LabError(f"no FINISHED serving run of {engine}/{model} in experiment {experiment!r} "
                       "(run the serving lab first, or pass --experiment/--engine/--model)")
    r = runs[0]
    rps = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "throughput.sweep.req_per_s")}
    ttft = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "latency.sweep.ttft_ms_p99")}
    ok = [lv for lv in rps if ttft.get(lv, math.inf) <= slo_ms]
    if not ok:
        raise LabError(f"run {r.info.run_id}: no level meets TTFT p99 <= {slo_ms:g} ms ({ttft})")
    lv = max(ok, key=lambda k: rps[k])
    return {"run_id": r.info.run_id, "level": lv, "goodput_rps": rps[lv], "ttft_ms_p99": ttft[lv],
            "engine_start_s": r.data.metrics.get("latency.engine_start_s", 0.0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requirements", default="experiments/system/support_assistant.yaml")
    ap.add_argument("--experiment", default="serving_v3")
    ap.add_argument("--engine", default="llama-server")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--scale", type=float, default=1.0, help="Multiply the requirements' mean and peak req/s.")
    ap.add_argument("--pod-start-s", type=float, default=30.0, help="Scheduling + image + model copy (not measured).")
    ap.add_argument("--plot", default="", help="Save the replicas-over-time plot here.")
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)

    from llmarch_lab import LabError
    from llmarch_lab.system import requirements
    from llmarch_lab.system.ops import autoscale

    try:
        req = requirements.load(a.requirements)
        slo = req.slos.ttft_ms_p99 or 1e9
        m = measured(a.experiment, a.engine, a.model, slo)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hw = req.hardware[0]
    inp = autoscale.Inputs(goodput_rps=m["goodput_rps"], engine_start_s=m["engine_start_s"],
                           mean_rps=req.workload.mean_rps * a.scale, peak_rps=req.workload.peak_rps * a.scale,
                           usd_per_hour=hw.usd_per_hour, wait_slo_s=(slo - m["ttft_ms_p99"]) / 1000.0,
                           pod_start_s=a.pod_start_s, slots=int(m["level"]))
    peak_n = max(1, math.ceil(inp.peak_rps * (1 + req.sizing.headroom) / inp.goodput_rps))
    top = max(peak_n * 2, 2)
    pols = [autoscale.Policy(f"fixed at peak ({peak_n})", peak_n, peak_n, None),
            autoscale.Policy("HPA: waiting/replica > 2 (queue only)", 1, top, 2.0),
            autoscale.Policy(f"HPA: in flight/replica > 0.8 x {int(m['level'])} (the bundle's)", 1, top, 0.8 * m["level"],
                             metric="inflight")]
    res = autoscale.compare(inp, pols)
    print(f"inputs: serving run {m['run_id']} ({a.engine}/{a.model}): goodput {inp.goodput_rps:.3f} req/s per replica "
          f"at concurrency {m['level']:g} (TTFT p99 {m['ttft_ms_p99']:.0f} ms <= {slo:g}), engine start "
          f"{inp.engine_start_s:.1f} s + pod start {inp.pod_start_s:g} s (stated); traffic mean {inp.mean_rps:g} / peak "
          f"{inp.peak_rps:g} req/s ({a.scale:g}x {a.requirements}); {hw.name} ${hw.usd_per_hour}/h; queueing budget "
          f"{inp.wait_slo_s:.1f} s")
    print(res["table"].to_markdown(index=False))
    if a.plot:
        autoscale.plot(res, a.plot)
        print(f"plot: {a.plot}")
    if not a.no_log:
        import re

        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        out = Result(tables={"autoscale": res["table"]})
        for r, p in zip(res["table"].itertuples(), pols):
            key = ["fixed", "hpa_queue", "hpa_inflight"][pols.index(p)]
            out.add(f"cost.autoscale_{key}_usd_per_month", float(r.usd_per_month))
            out.add(f"errors.autoscale_{key}_late_share", float(r.late_share_pct) / 100.0)
        bench.log_standalone("system_autoscale", "benchmarks/system_autoscale",
                             {"scale": a.scale, "run_id": m["run_id"], "requirements": a.requirements,
                              "pod_start_s": a.pod_start_s, "policies": re.sub(r"\s+", " ", str([p.name for p in pols]))}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
