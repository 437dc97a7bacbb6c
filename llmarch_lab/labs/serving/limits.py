"""How far is each engine from what this machine can do, and does any configuration meet an SLO?

    gemm = limits.matmul_gflops(threads=2)               # measured fp32 matrix-multiply rate
    bw = metrics.copy_bandwidth_gbs(threads=2)           # measured memory bandwidth
    front = limits.pareto(sweep)                          # rows no other row beats on both axes
    limits.meets(sweep, ttft_p99_ms=200, tok_s=100)       # rows meeting the target, if any
    limits.analysis(runs, gemm, bw)                       # per run: prefill and decode vs the limits

Physical limits of one request on a CPU:
- prefill is compute-bound: its floor is 2 x (non-embedding parameters) x prompt tokens FLOPs at
  the machine's matmul rate (attention over a few hundred tokens adds < 5% and is left out);
- decode is bandwidth-bound at small batches: every step reads all weights once, so one stream
  cannot decode faster than bandwidth / weight bytes tokens per second (the roofline), and a
  batch of B streams shares that read; its compute ceiling is matmul rate / (2 x parameters).
The matmul rate is measured with torch's fp32 GEMM (oneDNN / MKL) at the model's shapes; engines
that compute in int8 can exceed it (efficiency above 1 means the engine beats fp32 GEMM).
"""

from __future__ import annotations

import time


def matmul_gflops(m: int = 128, k: int = 576, n: int = 1536, threads: int = 2, repeats: int = 30) -> float:
    """Best-of fp32 matmul rate (GFLOP/s) of an (m x k) @ (k x n) product on `threads` threads:
    the default shape is one SmolLM2 MLP projection over a 128-token prompt."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2.0 * m * k * n / best / 1e9


def pareto(df, x: str = "output_tok_per_s", y: str = "ttft_p99_ms"):
    """The rows on the front: no other row has at least as much `x` and at most as much `y`
    with one of them strictly better. Sorted by x."""
    rows = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[False, True])
    keep, best_y = [], float("inf")
    for idx, r in rows.iterrows():
        if r[y] < best_y:
            keep.append(idx)
            best_y = r[y]
    return df.loc[keep].sort_values(x)


def meets(df, ttft_p99_ms: float, tok_s: float):
    """Rows with TTFT p99 below `ttft_p99_ms` and at least `tok_s` output tokens/s."""
    return df[(df.ttft_p99_ms < ttft_p99_ms) & (df.output_tok_per_s >= tok_s)]


def analysis(runs: list[dict], gemm_gflops: float, bandwidth_gbs: float):
    """One row per run: the single-stream level against the limits. Each run dict: run, model,
    engine, params (non-embedding parameters), weights_mb (bytes read per decode step, as served),
    prompt_tokens (mean, chat template included), ttft_p50_ms and tpot_p50_ms at concurrency 1,
    best_tok_s (the run's best throughput)."""
    import pandas as pd

    rows = []
    for r in runs:
        flops = 2.0 * r["params"] * r["prompt_tokens"]
        floor_ms = 1000.0 * flops / (gemm_gflops * 1e9)
        roof = bandwidth_gbs * 1e9 / (r["weights_mb"] * 2**20)
        single = 1000.0 / r["tpot_p50_ms"]
        rows.append({"run": r["run"], "model": r["model"], "engine": r["engine"],
                     "prefill_gflop": flops / 1e9, "ttft_p50_ms": r["ttft_p50_ms"], "ttft_floor_ms": floor_ms,
                     "prefill_efficiency": floor_ms / r["ttft_p50_ms"],
                     "weights_mb": r["weights_mb"], "decode_tok_s": single, "decode_roofline_tok_s": roof,
                     "decode_efficiency": single / roof,
                     "compute_ceiling_tok_s": gemm_gflops * 1e9 / (2.0 * r["params"]), "best_tok_s": r["best_tok_s"]})
    return pd.DataFrame(rows)


def front_figure(df, front, title: str, slo_ttft_ms: float, slo_tok_s: float):
    """Every (run, level) as a point, the Pareto front as a line, the target as a shaded box."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for i, (engine, g) in enumerate(df.groupby("engine", sort=True)):
        ax.scatter(g.output_tok_per_s, g.ttft_p99_ms, s=22, color=f"C{i}", label=engine, alpha=0.8)
    ax.plot(front.output_tok_per_s, front.ttft_p99_ms, "k--", lw=1, label="Pareto front")
    ax.axhspan(0, slo_ttft_ms, xmin=0, xmax=1, color="g", alpha=0.06)
    ax.axvline(slo_tok_s, color="g", lw=0.8)
    ax.axhline(slo_ttft_ms, color="g", lw=0.8)
    ax.annotate(f"target: TTFT p99 < {slo_ttft_ms:g} ms\nat >= {slo_tok_s:g} tok/s", (slo_tok_s, slo_ttft_ms),
                xytext=(6, -28), textcoords="offset points", fontsize=8, color="g")
    ax.set_yscale("log")
    ax.set_xlabel("output tokens/s (all streams)")
    ax.set_ylabel("TTFT p99 (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
