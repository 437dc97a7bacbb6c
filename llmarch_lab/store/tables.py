"""The read side of the store for reports: one row per finished run of a lab in a suite.

    from llmarch_lab.store.tables import runs_table
    runs_table("mysuite", "rag", settings=["mode"], metrics={"ndcg_at_10": "quality.ndcg_at_10"})

A lab's `report(suite)` builds its table here and renders it with common.report.Report.
"""

from __future__ import annotations

from llmarch_lab.store import tracking


def runs_table(suite: str, lab: str, settings: list[str], metrics: dict[str, str],
               newest_per: list[str] | None = None):
    """One row per finished run of `lab` in `suite` (newest first, one per `newest_per` key,
    default the run name): its name, the `settings` params and the `metrics` columns."""
    import pandas as pd

    rows = []
    for r in tracking.search(suite, tags={"lab": lab}):
        row = {"run": r["tags"].get("llmarch.name", r["name"]), **{s: r["params"].get(s) for s in settings}}
        row.update({col: r["metrics"].get(m) for col, m in metrics.items()})
        row["run_id"] = r["run_id"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["run", *settings, *metrics])
    df = pd.DataFrame(rows).drop_duplicates(newest_per or ["run"], keep="first")
    return df.iloc[::-1].reset_index(drop=True)  # oldest first: the order the suite ran
