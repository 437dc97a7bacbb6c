"""The plan's figures: cost vs quality of every plan (Pareto front, recommended plan) and the
savings waterfall from the baseline to the plan."""

from __future__ import annotations

from llmarch_lab.common import stats


def pareto_plot(table, rec: dict | None = None, title: str = "cost vs quality of every plan"):
    """Cost per 1k requests vs quality, the Pareto front (stats.pareto_front) highlighted, the
    baseline and the recommended plan marked. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    front = stats.pareto_front(table, {"usd_per_1k_requests": "lower", "quality": "higher"})
    other = table.drop(index=front)
    ax.scatter(other["usd_per_1k_requests"], other["quality"], s=25, color="0.6", label="plan")
    f = table.loc[front].sort_values("usd_per_1k_requests")
    ax.plot(f["usd_per_1k_requests"], f["quality"], "o-", color="tab:blue", label="Pareto front")
    for r in f.itertuples():
        ax.annotate(r.plan, (r.usd_per_1k_requests, r.quality), textcoords="offset points", xytext=(4, 4), fontsize=7)
    b = table[table["n_levers"] == 0]
    if len(b):
        ax.plot(b["usd_per_1k_requests"], b["quality"], "s", ms=9, mfc="none", mec="black", label="baseline (always large)")
    if rec is not None:
        r = table[table["plan"] == rec["plan"]]
        ax.plot(r["usd_per_1k_requests"], r["quality"], "*", ms=16, color="tab:red",
                label=f"recommended ({'meets' if rec['met'] else 'misses'} target)")
    ax.set_xlabel("USD per 1,000 requests")
    ax.set_ylabel("quality (mean per-request score)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def waterfall_plot(steps, title: str = "savings by lever, baseline to plan"):
    """Floating bars: the baseline cost, what each lever removes (in order), the plan's cost.
    Hand-written with matplotlib bars (no waterfall chart in matplotlib)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * (len(steps) + 1)), 4.5))
    base = steps["cost_usd"].iloc[0]
    labels, bottoms, heights, colors = ["baseline"], [0.0], [base], ["0.5"]
    for prev, row in zip(steps["cost_usd"].iloc[:-1], steps.iloc[1:].itertuples()):
        labels.append(f"{row.lever}\n{-row.step_saving_pct:+.1f} pp")
        lo, hi = sorted((prev, row.cost_usd))
        bottoms.append(lo)
        heights.append(hi - lo)
        colors.append("tab:green" if row.cost_usd <= prev else "tab:red")
    end = steps.iloc[-1]
    labels.append(f"plan\n{end.saving_pct:.1f}% saved")
    bottoms.append(0.0)
    heights.append(end.cost_usd)
    colors.append("tab:blue")
    x = range(len(labels))
    ax.bar(x, heights, bottom=bottoms, color=colors, edgecolor="black", linewidth=0.5)
    for i, (b, h) in enumerate(zip(bottoms, heights)):
        ax.text(i, b + h, f"${b + h:.4g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("trace cost (USD)")
    ax.set_title(title + f" (quality loss {end.rel_loss_pct:.2f}%)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
