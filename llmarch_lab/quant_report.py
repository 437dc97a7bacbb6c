"""Cross-mode comparison of a quantization suite: one table and the plots, read from MLflow.

    from llmarch_lab import quant_report
    table = quant_report.compare("quantization")     # newest finished run per mode and setting
    figs = quant_report.plots(table)                 # {"ppl_vs_decode": Figure, "memory_per_mode": ...}

The table reads only tracked runs (tracking.search), never notebook outputs, so it works for any
suite (CPU or GPU) and for runs made on other machines against a shared store.
"""

from __future__ import annotations

import textwrap

from llmarch_lab import tracking
from llmarch_lab.quantization import LLM_QUANTS, QuantParams

# Parameters that make two runs comparable (same model, same evaluation): rows are grouped by them.
SETTINGS = {"llm": ("model", "device", "threads", "max_length", "stride", "max_tokens", "prefill_tokens", "decode_new_tokens"),
            "embedder": ("embedder", "device", "threads", "max_docs", "max_queries", "seed")}
# Pareto objectives per target: (column, +1 = higher is better, -1 = lower is better).
OBJECTIVES = {"llm": (("perplexity", -1), ("decode_tok_per_s_b1", +1), ("weights_mb", -1)),
              "embedder": (("ndcg_at_10", +1), ("docs_per_s", +1), ("weights_mb", -1))}


def compare(suite: str | None = None):
    """One row per (target, mode, settings): the newest finished run's metrics, skipped modes with
    their reason, and `pareto` = no other mode of the same settings is at least as good on every
    objective of OBJECTIVES and better on one (see pareto_front)."""
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
        df.loc[pareto_front(group, OBJECTIVES[target]), "pareto"] = True
    return df.reset_index(drop=True)


def pareto_front(df, objectives, tol: float = 0.02) -> list:
    """Index labels of rows no other row dominates: as good on every objective and better on one,
    where differences under `tol` (relative) count as ties, as they are within measurement noise
    (a 0.1 MB weights difference must not keep a slower, worse mode on the front)."""
    cols = [c for c, _ in objectives if c in df.columns]
    sign = {c: s for c, s in objectives}
    vals = df[cols].astype(float).dropna()

    def better(b, a, c):  # b beats a on column c by more than the tolerance
        return sign[c] * (b[c] - a[c]) > tol * max(abs(a[c]), abs(b[c]))

    front = []
    for i, a in vals.iterrows():
        if not any(j != i and any(better(b, a, c) for c in cols) and not any(better(a, b, c) for c in cols)
                   for j, b in vals.iterrows()):
            front.append(i)
    return front


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
        out.append(f"**{target}** ({g.settings.iloc[0]})\n\n" + g[cols].to_markdown(index=False, floatfmt=".4g"))
    return "\n\n".join(out)
