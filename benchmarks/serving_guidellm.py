"""Cross-check the lab's load generator against guidellm on the same engine and workload.

    make engine-vllm engine-guidellm
    .venv/bin/python benchmarks/serving_guidellm.py                       # vLLM bf16, c = 1 and 16
    .venv/bin/python benchmarks/serving_guidellm.py --engine llamacpp --streams 1,4

Question: does the lab measure what an independent, widely used tool measures? One engine is
started once; at each concurrency guidellm (its own environment, .engines/guidellm) and the lab
run the same synthetic workload (prompt and output token counts, request count) back to back,
guidellm first, then the lab, and again in the other order for the next level, so drift on a
shared CPU does not favour one side. The table compares output tokens/s and median TTFT;
the goal is agreement within 10%. It also reports the CPU seconds each tool used: on a
2-core machine the load generator shares the CPU with the engine. Logged to MLflow (experiment
`interactive`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def guidellm_bin() -> Path:
    from llmarch_lab.llm.engines import tool_path

    return tool_path("guidellm", "LLMARCH_GUIDELLM", "guidellm/bin/guidellm", "engine-guidellm")


def run_guidellm(base: str, model: str, tokenizer_dir: Path, prompt_tokens: int, output_tokens: int,
                 streams: int, requests: int, out: Path, profile: str = "") -> dict:
    """One guidellm benchmark, closed loop at `streams` (or `profile`, a guidellm --profile spec such
    as kind=poisson,rate=12); returns parse_guidellm's numbers and the CPU seconds it used."""
    cmd = [str(guidellm_bin()), "run",
           "--backend", f"kind=openai_http,target={base},model={model}",
           "--tokenizer", f"kind=hf_auto,model={tokenizer_dir}",
           "--data", f"kind=synthetic_text,prompt_tokens={prompt_tokens},output_tokens={output_tokens}",
           "--profile", profile or f"kind=concurrent,streams={streams}",
           "--constraint", f"kind=max_requests,count={requests}",
           "--output", f"kind=json,path={out}", "--disable-console-interactive"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"guidellm failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
    # CPU the tool itself used (start-up and data synthesis included): on 2 shared cores, CPU a
    # load generator burns is CPU the engine does not get.
    return {**parse_guidellm(json.loads(out.read_text())),
            "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def parse_guidellm(report: dict) -> dict:
    bench = report["benchmarks"][0]
    m = bench["metrics"]

    def stat(name, key="successful"):
        return m[name][key]

    totals = m["request_totals"]
    return {"output_tok_per_s": stat("output_tokens_per_second")["mean"],  # its "Server Throughput" figure
            "ttft_p50_ms": stat("time_to_first_token_ms")["median"],
            "ttft_p99_ms": stat("time_to_first_token_ms")["percentiles"]["p99"],
            "itl_p50_ms": stat("inter_token_latency_ms")["median"],
            "tpot_p50_ms": stat("time_per_output_token_ms")["median"],
            "requests": int(totals["total"]), "errors": int(totals["errored"]) + int(totals["incomplete"])}


def run_lab(base_url: str, model: str, tok, prompt_tokens: int, output_tokens: int, streams: int,
            requests: int, extra_body: dict) -> dict:
    from llmarch_lab.labs.serving import metrics, workload
    from llmarch_lab.llm import load

    reqs = workload.build("synthetic", tok, requests, prompt_tokens, output_tokens, seed=streams)
    target = load.Target(base_url, model, extra_body=extra_body, timeout_s=600)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    recs, wall = load.run_level(target, workload.cycle(reqs), "concurrent", streams, requests, 3600)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    m = metrics.summarize(recs, wall)
    return {"output_tok_per_s": m["throughput.output_tok_per_s"], "ttft_p50_ms": m.get("latency.ttft_ms_p50"),
            "tpot_p50_ms": m.get("latency.tpot_ms_p50"), "requests": len(recs),
            "errors": int(round(m["errors.error_rate"] * len(recs))),
            "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="vllm", choices=["vllm", "llamacpp"])
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--streams", default="1,16", help="Concurrency levels.")
    ap.add_argument("--requests", type=int, default=32, help="Requests per level (both tools).")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)

    import pandas as pd

    from llmarch_lab import LabError, paths
    from llmarch_lab.assets import models
    from llmarch_lab.labs.serving.lab import ServingParams, fixed_output_body
    from llmarch_lab.llm import engines

    try:
        guidellm_bin()
        tok = models.load_tokenizer(models.SMOLLM2)
        eng = engines.launch(a.engine, models.SMOLLM2, dtype=a.dtype,
                             log_path=paths.cache_dir() / "serving" / "logs" / f"guidellm-xcheck-{a.engine}.log")
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    extra = fixed_output_body(ServingParams(engine=a.engine), tok)
    rows = []
    with eng, tempfile.TemporaryDirectory() as tmp:
        print(f"{a.engine} ready in {eng.start_s:.0f} s at {eng.base_url}", flush=True)
        run_lab(eng.base_url, eng.model_name, tok, a.prompt_tokens, a.output_tokens, 1, 2, extra)  # warm-up
        for i, s in enumerate(int(x) for x in a.streams.split(",")):
            out = Path(tmp) / f"g{s}.json"
            order = ("guidellm", "lab") if i % 2 == 0 else ("lab", "guidellm")
            res = {}
            for tool in order:
                t0 = time.perf_counter()
                if tool == "guidellm":
                    res[tool] = run_guidellm(eng.base_url.removesuffix("/v1"), eng.model_name, models.smollm2_dir(),
                                             a.prompt_tokens, a.output_tokens, s, a.requests, out)
                else:
                    res[tool] = run_lab(eng.base_url, eng.model_name, tok, a.prompt_tokens, a.output_tokens, s,
                                        a.requests, extra)
                print(f"c={s} {tool}: {res[tool]} ({time.perf_counter() - t0:.0f} s)", flush=True)
            g, lab = res["guidellm"], res["lab"]
            rows.append({"concurrency": s, "requests": a.requests,
                         "guidellm_tok_per_s": g["output_tok_per_s"], "lab_tok_per_s": lab["output_tok_per_s"],
                         "tok_per_s_diff_pct": 100 * (lab["output_tok_per_s"] / g["output_tok_per_s"] - 1),
                         "guidellm_ttft_p50_ms": g["ttft_p50_ms"], "lab_ttft_p50_ms": lab["ttft_p50_ms"],
                         "ttft_diff_pct": 100 * (lab["ttft_p50_ms"] / g["ttft_p50_ms"] - 1),
                         "guidellm_tpot_p50_ms": g["tpot_p50_ms"], "lab_tpot_p50_ms": lab["tpot_p50_ms"],
                         "guidellm_cpu_s": g["cpu_s"], "lab_cpu_s": lab["cpu_s"],
                         "errors": g["errors"] + lab["errors"], "first": order[0]})
    df = pd.DataFrame(rows)
    df["within_10pct"] = (df.tok_per_s_diff_pct.abs() <= 10) & (df.ttft_diff_pct.abs() <= 10)
    print(f"\nguidellm vs llmarch-lab, {a.engine} ({a.dtype if a.engine == 'vllm' else 'gguf'}) SmolLM2-135M, "
          f"{a.prompt_tokens} prompt / {a.output_tokens} output tokens, {a.requests} requests per level")
    print(df.to_markdown(index=False, floatfmt=".1f"))
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        res = Result(tables={"guidellm_crosscheck": df}, tags={"guidellm": "0.8.1"})
        res.add("errors.max_abs_tok_per_s_diff_pct", df.tok_per_s_diff_pct.abs().max())
        res.add("errors.max_abs_ttft_diff_pct", df.ttft_diff_pct.abs().max())
        bench.log_standalone("serving_guidellm", "benchmarks/serving_guidellm",
                             {"engine": a.engine, "streams": a.streams, "requests": a.requests}, res)
    return 0 if df.within_10pct.all() else 1


if __name__ == "__main__":
    sys.exit(main())
