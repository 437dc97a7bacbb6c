"""The lab's plots: precision-recall curves, confusion matrices, per-entity PII bars, and the
latency vs F1 Pareto view across detectors (report.py)."""

from __future__ import annotations


def _fig(w=5.0, h=3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def pr_curve(curve, name: str):
    """curve: DataFrame precision, recall (detectors.pr_curve)."""
    fig, ax = _fig()
    ax.plot(curve["recall"], curve["precision"], drawstyle="steps-post")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=f"{name}: precision-recall")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion(labels, preds, name: str):
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _fig(3.8, 3.4)
    ConfusionMatrixDisplay.from_predictions(list(labels), list(preds), display_labels=["benign", "attack"],
                                            ax=ax, colorbar=False)
    ax.set_title(f"{name} (out-of-fold where trained)")
    fig.tight_layout()
    return fig


def per_entity_bars(per_entity, title: str):
    """Grouped precision / recall / F2 bars per entity type (support in the tick labels)."""
    import numpy as np

    df = per_entity[per_entity["support"] > 0]
    fig, ax = _fig(max(6.0, 0.55 * len(df)), 3.8)
    x = np.arange(len(df))
    for i, col in enumerate(("precision", "recall", "f2")):
        ax.bar(x + (i - 1) * 0.27, df[col].fillna(0), width=0.27, label=col)
    ax.set_xticks(x, [f"{e}\n({s})" for e, s in zip(df["entity"], df["support"])], rotation=60, fontsize=7, ha="right")
    ax.set(ylim=(0, 1.05), title=title)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


def latency_vs_quality(table, x: str, y: str, label: str, title: str):
    """A scatter of y (quality, higher better) against x (latency, lower better), Pareto points ringed."""
    from llmarch_lab.common import stats

    df = table.dropna(subset=[x, y])
    fig, ax = _fig()
    ax.scatter(df[x], df[y])
    for _, r in df.iterrows():
        ax.annotate(str(r[label]), (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if len(df):
        front = df.loc[stats.pareto_front(df, {x: "lower", y: "higher"})]
        ax.scatter(front[x], front[y], s=120, facecolors="none", edgecolors="red", label="Pareto front")
        ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel=x, ylabel=y, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def per_source(per, name: str, goal_fpr: float = 0.05, goal_recall: float = 0.85):
    """Horizontal bars, one per outside source: benign FPR (left panel) and attack recall (right),
    with Wilson 95% intervals and the goal lines; dev sources above test ones."""
    import numpy as np

    first, _ = _fig()  # selects the Agg backend
    import matplotlib.pyplot as plt

    plt.close(first)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.28 * max(len(per), 8) + 1.2))
    for ax, label, goal, what in ((axes[0], 0, goal_fpr, "benign FPR"), (axes[1], 1, goal_recall, "attack recall")):
        d = per[per.label == label].sort_values(["group", "source"], ascending=False)
        y = np.arange(len(d))
        err = np.vstack([d.value - d.lo, d.hi - d.value])
        colors = ["tab:blue" if g == "dev" else "tab:orange" for g in d.group]
        ax.barh(y, d.value, xerr=err, color=colors, alpha=0.8, capsize=2)
        ax.set_yticks(y, [f"{s} ({g}, n={n})" for s, g, n in zip(d.source, d.group, d.n)], fontsize=7)
        ax.axvline(goal, color="red", ls="--", lw=1)
        ax.set(xlim=(0, 1), xlabel=what, title=f"{name}: {what} per source")
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
