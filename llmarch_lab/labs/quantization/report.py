"""Cross-mode comparison of a quantization suite: one table and the plots, read from MLflow.

    from llmarch_lab.labs.quantization import report
    report.report("quantization").print()             # the table, deltas with 95% intervals, plots
    table = report.compare("quantization")            # newest finished run per mode and setting
    figs = report.plots(table)                        # {"ppl_vs_decode": Figure, "memory_per_mode": ...}

The table reads only tracked runs (tracking.search), never notebook outputs, so it works for any
suite (CPU or GPU) and for runs made on other machines against a shared store.
"""

from __future__ import annotations

import textwrap

from llmarch_lab import LabError, schema
from llmarch_lab.common import stats
from llmarch_lab.common.report import Report, frame_markdown
from llmarch_lab.labs.quantization.lab import LLM_QUANTS, QuantParams
from llmarch_lab.store import tracking

# Parameters that make two runs comparable (same model, same evaluation): rows are grouped by them.
SETTINGS = {"llm": ("model", "device", "threads", "max_length", "stride", "max_tokens", "prefill_tokens", "decode_new_tokens"),
            "embedder": ("embedder", "device", "threads", "max_docs", "max_queries", "seed")}
# Pareto objectives per target: columns (metric names without their prefix); their directions
# come from the metric specs (schema.SPECS), never from this file.
OBJECTIVES = {"llm": ("quality.perplexity", "throughput.decode_tok_per_s_b1", "memory.weights_mb"),
              "embedder": ("quality.ndcg_at_10", "throughput.docs_per_s", "memory.weights_mb")}


def objectives(target: str) -> dict[str, str]:
    return {m.split(".", 1)[1]: schema.direction(m) for m in OBJECTIVES[target]}


def compare(suite: str | None = None):
    """One row per (target, mode, settings): the newest finished run's metrics, skipped modes with
    their reason, and `pareto` = no other mode of the same settings is at least as good on every
    objective of OBJECTIVES and better on one (common.stats.pareto_front)."""
    import pandas as pd

    suite = suite or tracking.current_suite()
    rows = []
    for r in tracking.search(suite, tags={"lab": QuantParams.lab}):  # newest first
        p, target = r["params"], r["params"].get("target", "llm")
        row = {"target": target, "quant": p.get("quant"), "double_quant": p.get("double_quant") == "true",
               "settings": ", ".join(f"{k}={p.get(k)}" for k in SETTINGS[target]),
               "skipped": r["tags"].get("skip_reason", "") if r["tags"].get("skipped") == "true" else "",
               **{k.split(".", 1)[1]: v for k, v in r["metrics"].items() if k != "latency.run_wall_s"},
               "run_wall_s": r["metrics"].get("latency.run_wall_s"), "run_id": r["run_id"]}
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["target", "quant", "settings", "skipped"])
    df = pd.DataFrame(rows).drop_duplicates(["target", "quant", "double_quant", "settings"], keep="first")
    order = {q: i for i, q in enumerate(LLM_QUANTS)}
    df = df.assign(_o=df.quant.map(order)).sort_values(["target", "settings", "_o", "double_quant"]).drop(columns="_o")
    df["pareto"] = False
    for (target, _), group in df[df.skipped == ""].groupby(["target", "settings"]):
        df.loc[stats.pareto_front(group, objectives(target)), "pareto"] = True
    return df.reset_index(drop=True)


def label(row) -> str:
    return row.quant + ("+dq" if row.double_quant else "")


def plots(df) -> dict:
    """Figures for the newest settings group of each target present in `df`."""
    import matplotlib.pyplot as plt

    figs = {}
    ran = df[df.skipped == ""] if "skipped" in df else df
    llm = ran[ran.target == "llm"]
    if not llm.empty and "perplexity" in llm:
        llm = llm[llm.settings == llm.settings.iloc[0]]
        x = "decode_tok_per_s_b1" if "decode_tok_per_s_b1" in llm else next(c for c in llm if c.startswith("decode_tok_per_s"))
        fig, ax = plt.subplots(figsize=(8, 5.5))
        sizes = 2000 * llm.weights_mb / llm.weights_mb.max()
        ax.scatter(llm[x], llm.perplexity, s=sizes, alpha=0.45, c=range(len(llm)), cmap="tab10",
                   edgecolors="black", linewidths=[2.5 if f else 0 for f in llm.pareto])
        offsets = [(14, 10), (14, -14), (-14, 10), (-14, -14)]  # stagger labels of nearby bubbles
        for k, (_, r) in enumerate(llm.sort_values([x]).iterrows()):
            dx, dy = offsets[k % len(offsets)]
            ax.annotate(f"{label(r)} ({r.weights_mb:.0f} MB)", (r[x], r.perplexity), xytext=(dx, dy),
                        textcoords="offset points", ha="left" if dx > 0 else "right", fontsize=8,
                        fontweight="bold" if r.pareto else "normal", arrowprops={"arrowstyle": "-", "lw": 0.5})
        ax.scatter([], [], s=80, facecolors="none", edgecolors="black", linewidths=2,
                   label="Pareto front (ppl, tok/s, weights)")
        ax.set_xlabel(f"{x.replace('_', ' ')} (greedy)")
        ax.set_ylabel("WikiText-2 perplexity (lower is better)")
        ax.set_title("Quality vs decode speed; bubble area = weights MB\n"
                     + textwrap.fill(llm.settings.iloc[0], 110), fontsize=8)
        ax.legend(fontsize=8)
        ax.margins(0.2)
        fig.tight_layout()
        figs["ppl_vs_decode"] = fig
        plt.close(fig)  # shown or logged by the caller, not by a notebook's inline backend
    mem = ran[ran.weights_mb.notna()] if "weights_mb" in ran else ran.iloc[0:0]
    if not mem.empty:
        groups = [g[g.settings == g.settings.iloc[0]] for _, g in mem.groupby("target", sort=False)]
        fig, axes = plt.subplots(1, len(groups), figsize=(3 + 1.1 * sum(map(len, groups)), 4), squeeze=False,
                                 gridspec_kw={"width_ratios": [len(g) + 1 for g in groups]})
        for ax, g in zip(axes[0], groups):
            target = g.target.iloc[0]
            names = [label(r) for _, r in g.iterrows()]
            pos = range(len(g))
            ax.bar([i - 0.2 for i in pos], g.weights_mb, 0.4, label="weights_mb")
            if "peak_rss_mb" in g:
                ax.bar([i + 0.2 for i in pos], g.peak_rss_mb, 0.4, label="peak_rss_mb (process, during eval)")
            ax.set_xticks(list(pos), names, rotation=30, ha="right")
            ax.set_ylabel("MB")
            ax.set_ylim(top=1.35 * max(g.weights_mb.max(), g.get("peak_rss_mb", g.weights_mb).max()))  # room for the legend
            ax.set_title(f"{target}: memory per mode", fontsize=10)
            ax.legend(fontsize=8)
        fig.tight_layout()
        figs["memory_per_mode"] = fig
        plt.close(fig)
    return figs


def markdown(df) -> str:
    """The comparison as markdown, one table per target, the columns an architect reads first."""
    first = ("quant", "double_quant", "perplexity", "ppl_delta_pct", "ndcg_at_10", "ndcg_delta_pct", "weights_mb",
             "peak_rss_mb", "load_s", "prefill_ms_p50")
    out = []
    for target, g in df.groupby("target", sort=False):
        g = g.dropna(axis=1, how="all")
        cols = [c for c in first if c in g] + sorted(c for c in g if c.startswith("decode_tok_per_s"))
        cols += [c for c in ("docs_per_s", "pareto", "skipped") if c in g]
        out.append(f"**{target}** ({g.settings.iloc[0]})\n\n" + frame_markdown(g[cols], ".4g"))
    return "\n\n".join(out)


# ------------------------------------------------------------------------- deltas with intervals

def _ppl_delta(nll_q, n_q, nll_f, n_f):
    """100 * (ppl_q / ppl_fp32 - 1) from per-window mean NLLs and scored-token counts."""
    import numpy as np

    return 100.0 * (np.exp((nll_q * n_q).sum(-1) / n_q.sum(-1) - (nll_f * n_f).sum(-1) / n_f.sum(-1)) - 1.0)


def _ndcg_delta(q, f):
    return 100.0 * (q.mean(-1) / f.mean(-1) - 1.0)


def delta_intervals(df, n_resamples: int = 1000):
    """Paired-bootstrap 95% intervals of each mode's delta against the fp32 row of the same
    settings: perplexity resampled over the scored windows (tables/ppl_windows), nDCG@10 over
    the queries (tables/per_query). Adds delta_ci95_low / delta_ci95_high columns."""
    import numpy as np

    df = df.copy()
    df["delta_ci95_low"], df["delta_ci95_high"] = np.nan, np.nan
    ran = df[(df.skipped == "") & df.run_id.notna()]
    for (target, _), group in ran.groupby(["target", "settings"]):
        ref = group[(group.quant == "fp32") & ~group.double_quant]
        if ref.empty:
            continue
        name = "ppl_windows" if target == "llm" else "per_query"
        try:
            f = tracking.load_table(ref.run_id.iloc[0], name)
        except LabError:
            continue
        for i, row in group.iterrows():
            if row.quant == "fp32":
                continue
            try:
                q = tracking.load_table(row.run_id, name)
            except LabError:
                continue
            if len(q) != len(f) or len(q) < 2:
                continue
            if target == "llm":
                r = stats.paired_bootstrap(_ppl_delta, q.nll_mean, q.scored_tokens.astype(float), f.nll_mean,
                                           f.scored_tokens.astype(float), n_resamples=n_resamples)
            else:
                m = "quality.ndcg_at_10"
                qq, ff = q.set_index("qid")[m], f.set_index("qid")[m]
                r = stats.paired_bootstrap(_ndcg_delta, qq.to_numpy(), ff.loc[qq.index].to_numpy(),
                                           n_resamples=n_resamples)
            df.loc[i, ["delta_ci95_low", "delta_ci95_high"]] = r["ci_low"], r["ci_high"]
    return df


def report(suite: str, intervals: bool = True) -> Report:
    """The quantization suite as one Report: the comparison table (+ delta intervals), plots."""
    df = compare(suite)
    if intervals and not df.empty and "run_id" in df:
        df = delta_intervals(df)
    dirs = {**objectives("llm"), **objectives("embedder"), "ppl_delta_pct": "lower", "ndcg_delta_pct": "higher"}
    notes = [f"skipped {r.target}/{r.quant}: {r.skipped}" for _, r in df.iterrows() if r.get("skipped")] if len(df) else []
    notes.append("delta_ci95_*: paired-bootstrap 95% interval of ppl_delta_pct (llm, over windows) "
                 "or ndcg_delta_pct (embedder, over queries) against fp32")
    return Report(f"quantization modes of suite {suite}", df, dirs, plots(df) if len(df) else {}, notes,
                  hidden=("run_id", "settings"))
