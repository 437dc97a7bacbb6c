"""The serving lab's tables and plots: one run's sweep table, saturation point and plots, and
the suite table (one row per run x load level) read from MLflow.

    from llmarch_lab.labs.serving.report import report
    report("serving").print()                       # every level of every run of the suite

Per-level values come from the runs' `*.sweep.*` metric series (step = level), so the table
works for any suite, CPU or GPU, and for runs made on other machines against a shared store.
"""

from __future__ import annotations

import json

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store import tracking

SWEEP_COLUMNS = ["level", "requests", "errors", "error_rate", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms",
                 "itl_p50_ms", "e2e_p99_ms", "output_tok_per_s", "req_per_s", "goodput_req_per_s", "slo_attainment"]


def sweep_row(level: float, n: int, m: dict) -> dict:
    g = lambda k: m.get(k, float("nan"))  # noqa: E731 - a level with no successful request has no latencies
    return {"level": level, "requests": n, "errors": int(round(m["errors.error_rate"] * n)),
            "error_rate": m["errors.error_rate"], "ttft_p50_ms": g("latency.ttft_ms_p50"),
            "ttft_p99_ms": g("latency.ttft_ms_p99"), "tpot_p50_ms": g("latency.tpot_ms_p50"),
            "itl_p50_ms": g("latency.itl_ms_p50"), "e2e_p99_ms": g("latency.e2e_ms_p99"),
            "output_tok_per_s": m["throughput.output_tok_per_s"], "req_per_s": m["throughput.req_per_s"],
            "goodput_req_per_s": m["throughput.goodput_req_per_s"], "slo_attainment": m["quality.slo_attainment"]}


def saturation_level(sweep) -> float | None:
    """The first level whose output throughput is within 10% of the sweep's best: past it, more
    load mostly buys latency."""
    if sweep.empty or sweep.output_tok_per_s.max() <= 0:
        return None
    best = sweep.output_tok_per_s.max()
    return float(sweep[sweep.output_tok_per_s >= 0.9 * best].level.iloc[0])


def latency_vs_throughput(sweep, title: str, level_name: str = "concurrency"):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sat = saturation_level(sweep)
    for ax, cols, ylabel in ((axes[0], ("ttft_p50_ms", "ttft_p99_ms"), "TTFT (ms)"),
                             (axes[1], ("tpot_p50_ms", "e2e_p99_ms"), "ms")):
        for col, style in zip(cols, ("o-", "s--")):
            ax.plot(sweep.output_tok_per_s, sweep[col], style, label=col.replace("_", " "))
        for _, r in sweep.iterrows():
            ax.annotate(f"{r.level:g}", (r.output_tok_per_s, r[cols[0]]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        if sat is not None:
            r = sweep[sweep.level == sat].iloc[0]
            ax.axvline(r.output_tok_per_s, color="red", alpha=0.4, lw=1)
            ax.plot([r.output_tok_per_s], [r[cols[0]]], "o", ms=14, mfc="none", mec="red",
                    label=f"saturation ({level_name} {sat:g})")
        ax.set_xlabel("output tokens/s (aggregate)")
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title(f"{title}: TTFT vs throughput (labels: {level_name})", fontsize=10)
    axes[1].set_title("time per output token and tail end-to-end", fontsize=10)
    fig.tight_layout()
    return fig


def ttft_cdf(requests, title: str, slo_ttft_ms: float | None = None):
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ok = requests[requests.error == ""]
    for level, g in ok.groupby("level"):
        x = np.sort(g.ttft_ms.to_numpy(dtype=float))
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"{level:g}")
    if slo_ttft_ms:
        ax.axvline(slo_ttft_ms, color="red", ls="--", lw=1, label=f"SLO {slo_ttft_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{title}: TTFT CDF per load level")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="level")
    fig.tight_layout()
    return fig


def engine_metrics(series, requests, title: str, names: dict):
    """What the engine reported during each level (queue and busy slots from its /metrics, top)
    beside what the client measured (TTFT of each request at the moment it was sent, bottom),
    on the same time axis: levels side by side, each from its own start."""
    import matplotlib.pyplot as plt

    levels = sorted(series.level.unique())
    fig, axes = plt.subplots(2, len(levels), figsize=(max(6.5, 2.6 * len(levels)), 5.2), sharex="col",
                             sharey="row", squeeze=False)
    ok = requests[requests.error == ""]
    for j, level in enumerate(levels):
        top, bottom = axes[0][j], axes[1][j]
        g = series[series.level == level]
        for role, style in (("running", "-"), ("queue", "--")):
            s = g[g.metric == names.get(role, "")]
            if len(s):
                top.step(s.t_s, s.value, style, where="post", label=f"{role} ({names[role].split(':')[-1]})")
        r = ok[ok.level == level]
        bottom.plot(r.start_ms / 1000.0, r.ttft_ms, ".", ms=5, color="C3")
        top.set_title(f"level {level:g}", fontsize=9)
        bottom.set_xlabel("s into the level")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    axes[0][0].set_ylabel("engine: requests")
    axes[1][0].set_ylabel("client: TTFT (ms)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}\nengine /metrics (top) beside client-side TTFT (bottom)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- suite table

COLUMNS = {  # table column -> sweep metric
    "ttft_p50_ms": "latency.sweep.ttft_ms_p50", "ttft_p99_ms": "latency.sweep.ttft_ms_p99",
    "tpot_p50_ms": "latency.sweep.tpot_ms_p50", "e2e_p99_ms": "latency.sweep.e2e_ms_p99",
    "output_tok_per_s": "throughput.sweep.output_tok_per_s", "goodput_req_per_s": "throughput.sweep.goodput_req_per_s",
    "error_rate": "errors.sweep.error_rate",
    # from the engine's own /metrics (llama-server, vLLM; NaN for llama-cpp-python)
    "engine_running_max": "count.sweep.engine_running_max", "engine_queue_max": "count.sweep.engine_queue_max",
    "engine_tokens_per_decode": "count.sweep.engine_tokens_per_decode",
    "engine_prefix_cache_hit_rate": "count.sweep.engine_prefix_cache_hit_rate",
}


def compare(suite: str | None = None):
    """One row per (run, load level): the newest finished run per run name, levels from its
    `*.sweep.*` metric series (step = level), so it works for any suite and any store."""
    import pandas as pd

    suite = suite or tracking.current_suite()
    rows, seen = [], set()
    for r in tracking.search(suite, tags={"lab": "serving"}):  # newest first
        name = r["tags"].get("llmarch.name", r["name"])
        if name in seen:
            continue
        seen.add(name)
        p = r["params"]
        series = {col: dict(tracking.metric_history(r["run_id"], key)) for col, key in COLUMNS.items()}
        steps = sorted(series["output_tok_per_s"])
        for i, step in enumerate(steps):
            level = json.loads(p["levels"])[i] if p.get("profile") in ("constant", "poisson") else step
            dtype = {"vllm": p.get("dtype"), "ctranslate2": "int8"}.get(p.get("engine"), "gguf")
            rows.append({"run": name, "model": p.get("model"), "engine": p.get("engine"), "dtype": dtype,
                         "parallel": int(p["parallel"]) if p.get("parallel") else None,
                         "profile": p.get("profile"), "level": float(level),
                         **{col: series[col].get(step, float("nan")) for col in COLUMNS},
                         "roofline_efficiency": r["metrics"].get("throughput.roofline_efficiency") if i == 0 else None})
    if not rows:
        return pd.DataFrame(columns=["run", "engine", "level", *COLUMNS])
    df = pd.DataFrame(rows)
    base = df[df.level == 1.0].set_index("run").output_tok_per_s
    df["speedup_vs_level1"] = [row.output_tok_per_s / base[row.run] if row.run in base and row.profile == "concurrent"
                               else float("nan") for row in df.itertuples()]
    return df


def report(suite: str) -> Report:
    df = compare(suite)
    dirs = directions_for({**COLUMNS, "roofline_efficiency": "throughput.roofline_efficiency",
                           "speedup_vs_level1": "throughput.max_speedup_vs_level1"})
    figs = {"ttft_p99_vs_throughput": tradeoff(df, f"suite {suite}")} if not df.empty else {}
    return Report(f"serving sweeps of suite {suite} (one row per run x level)", df, dirs, figures=figs)


def _short_label(name: str) -> str:
    """A run name for a legend: grid suffixes without their quoting ("knobs[parallel=8,
    engine_args=['--ubatch-size', '512']]" -> "knobs parallel=8 ubatch-size 512")."""
    import re

    out = re.sub(r"engine_args=|[\[\]',]|--", " ", name)
    return re.sub(r"\s+", " ", out).strip()


def tradeoff(df, title: str):
    """Every run of a suite on one plane: output tokens/s (x) against TTFT p99 (y), one line per
    run through its levels (labelled), so engine settings that buy throughput with tail latency
    (slots, batch sizes, chunked prefill) can be read off directly. Down and right is better."""
    import matplotlib.pyplot as plt

    groups = list(df.groupby("run", sort=False))
    fig, ax = plt.subplots(figsize=(8.5, 5.0 + 0.16 * len(groups)))
    markers = "osD^vP*Xh<>p"
    for i, (name, g) in enumerate(groups):
        g = g.sort_values("level")
        color, marker = f"C{i % 10}", markers[(i // 10 + i) % len(markers)]
        ax.plot(g.output_tok_per_s, g.ttft_p99_ms, "-", marker=marker, color=color, label=_short_label(name), ms=6)
        for row in g.itertuples():
            ax.annotate(f"{row.level:g}", (row.output_tok_per_s, row.ttft_p99_ms), fontsize=6,
                        xytext=(3, 3), textcoords="offset points", color=color)
    ax.set_xlabel("output tokens/s (all streams)")
    ax.set_ylabel("TTFT p99 (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    ax.set_title(f"{title}: tail latency against throughput\n(point labels: load level; down and right is better)",
                 fontsize=10)
    fig.tight_layout()
    return fig
