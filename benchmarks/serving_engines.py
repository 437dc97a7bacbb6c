"""Serving v3: the engines side by side, the seed's latency target, and each engine's distance
from this machine's physical limits.

    .venv/bin/python benchmarks/serving_engines.py                  # runs experiments/serving_v3.yaml (resumes), then the analysis
    .venv/bin/python benchmarks/serving_engines.py --report-only    # the analysis of the runs in MLflow
    .venv/bin/python benchmarks/serving_engines.py --suite experiments/serving_slo.yaml --report-only

Needs make engine-llama-server engine-vllm engine-openvino engine-ctranslate2 model-qwen.
Prints: every (run, level) row; per model the Pareto front of TTFT p99 against output tokens/s
over every engine and level; the rows that meet the target (default TTFT p99 < 200 ms at >= 100
output tok/s); and the limit analysis (labs/serving/limits.py): each run's single-stream TTFT
against the prefill floor at the measured fp32 matmul rate, and its single-stream decode rate
against the bandwidth roofline. The tables and the front's plot go to one MLflow run
(experiment `interactive`, lab serving_engines). Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def run_inputs(suite: str) -> list[dict]:
    """Per finished run of the suite (newest per name): what limits.analysis needs."""
    from llmarch_lab.llm import engines
    from llmarch_lab.store import tracking

    out, seen, counts = [], set(), {}
    for r in tracking.search(suite, tags={"lab": "serving"}):
        name = r["tags"].get("llmarch.name", r["name"])
        weights = r["tags"].get("serving.weights", "")
        if name in seen or r["params"].get("profile", "concurrent") != "concurrent" or " MB" not in weights:
            continue
        seen.add(name)
        model = r["params"]["model"]
        if model not in counts:
            counts[model] = engines.param_counts(engines.hf_folder(model))
        s = {k: dict(tracking.metric_history(r["run_id"], k)).get(1) for k in (
            "latency.sweep.ttft_ms_p50", "latency.sweep.tpot_ms_p50", "throughput.sweep.total_tok_per_s",
            "throughput.sweep.output_tok_per_s", "throughput.sweep.req_per_s")}
        if any(v is None for v in s.values()):
            continue
        out.append({"run": name, "model": model, "engine": r["params"]["engine"],
                    "params": counts[model]["non_embedding"], "weights_mb": float(weights.rsplit(", ", 1)[1].split()[0]),
                    "prompt_tokens": (s["throughput.sweep.total_tok_per_s"] - s["throughput.sweep.output_tok_per_s"])
                    / s["throughput.sweep.req_per_s"],
                    "ttft_p50_ms": s["latency.sweep.ttft_ms_p50"], "tpot_p50_ms": s["latency.sweep.tpot_ms_p50"],
                    "best_tok_s": r["metrics"].get("throughput.max_output_tok_per_s", float("nan")),
                    "total_params": counts[model]["total"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="experiments/serving_v3.yaml")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--slo-ttft-ms", type=float, default=200.0)
    ap.add_argument("--slo-tok-s", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if not a.report_only:
        bench.sweep_main(__doc__, a.suite, "serving", ["--suite", a.suite])

    from llmarch_lab import config
    from llmarch_lab.labs.serving import limits, metrics, report
    from llmarch_lab.results import Result

    suite = config.load_suite(a.suite).name
    df = report.compare(suite)
    if df.empty:
        print(f"no finished serving runs in experiment {suite!r}: run without --report-only")
        return 1
    cols = ["run", "model", "engine", "parallel", "profile", "level", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms",
            "output_tok_per_s", "goodput_req_per_s", "error_rate"]
    res = Result(tables={"sweep": df[cols]})
    print(df[cols].to_markdown(index=False, floatfmt=".4g"))
    for model, g in df.groupby("model"):
        front = limits.pareto(g)
        print(f"\nPareto front, {model} (TTFT p99 vs output tok/s, every engine and level):\n")
        print(front[["run", "engine", "parallel", "profile", "level", "ttft_p99_ms", "output_tok_per_s"]].to_markdown(index=False, floatfmt=".4g"))
        res.figures[f"pareto_{Path(model).name}"] = limits.front_figure(g, front, f"{suite}: {model}", a.slo_ttft_ms, a.slo_tok_s)
        res.tables[f"pareto_{Path(model).name}"] = front
    ok = limits.meets(df, a.slo_ttft_ms, a.slo_tok_s)
    print(f"\nrows meeting TTFT p99 < {a.slo_ttft_ms:g} ms at >= {a.slo_tok_s:g} tok/s: {len(ok)}")
    if len(ok):
        print(ok[cols].to_markdown(index=False, floatfmt=".4g"))
    gemm = limits.matmul_gflops(threads=a.threads)
    bw = metrics.copy_bandwidth_gbs(threads=a.threads)
    lim = limits.analysis(run_inputs(suite), gemm, bw)
    print(f"\nlimits: fp32 matmul {gemm:.1f} GFLOP/s (128x576 @ 576x1536, {a.threads} threads), copy bandwidth {bw:.1f} GB/s\n")
    print(lim.to_markdown(index=False, floatfmt=".3g"))
    res.tables["limits"] = lim
    res.add("throughput.matmul_gflops", gemm)
    res.add("throughput.copy_bandwidth_gb_per_s", bw)
    run_id = bench.log_standalone("serving_engines", "benchmarks/serving_engines.py",
                                  {"suite": suite, "slo_ttft_ms": a.slo_ttft_ms, "slo_tok_s": a.slo_tok_s}, res)
    print(f"\nlogged to MLflow run {run_id} (experiment interactive); {json.dumps({'meets': len(ok)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
