"""Cross-run comparison of a serving suite: one row per (run, load level), read from MLflow.

    from llmarch_lab.serving import suite_report
    table = suite_report.compare("serving")        # newest finished run per run name
    print(suite_report.markdown(table))

Per-level values come from the runs' `*.sweep.*` metric series (step = level), so the table
works for any suite, CPU or GPU, and for runs made on other machines against a shared store.
"""

from __future__ import annotations

import json

from llmarch_lab import tracking

COLUMNS = {  # table column -> sweep metric
    "ttft_p50_ms": "latency.sweep.ttft_ms_p50", "ttft_p99_ms": "latency.sweep.ttft_ms_p99",
    "tpot_p50_ms": "latency.sweep.tpot_ms_p50", "e2e_p99_ms": "latency.sweep.e2e_ms_p99",
    "output_tok_per_s": "throughput.sweep.output_tok_per_s", "goodput_req_per_s": "quality.sweep.goodput_req_per_s",
    "error_rate": "quality.sweep.error_rate",
}


def compare(suite: str | None = None):
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
            rows.append({"run": name, "engine": p.get("engine"), "dtype": p.get("dtype") if p.get("engine") == "vllm" else "gguf",
                         "profile": p.get("profile"), "level": float(level),
                         **{col: series[col].get(step, float("nan")) for col in COLUMNS},
                         "roofline_efficiency": r["metrics"].get("quality.roofline_efficiency") if i == 0 else None})
    if not rows:
        return pd.DataFrame(columns=["run", "engine", "level", *COLUMNS])
    df = pd.DataFrame(rows)
    base = df[df.level == 1.0].set_index("run").output_tok_per_s
    df["speedup_vs_level1"] = [row.output_tok_per_s / base[row.run] if row.run in base and row.profile == "concurrent"
                               else float("nan") for row in df.itertuples()]
    return df


def markdown(df) -> str:
    return df.drop(columns=["roofline_efficiency"]).to_markdown(index=False, floatfmt=".3g")
