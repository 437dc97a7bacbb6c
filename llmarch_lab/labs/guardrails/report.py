"""The guardrails lab's suite tables, one per part that ran: PII configurations, injection
detectors (with the latency vs F1 Pareto plot), toxicity, output-validation strategies, the whole
stack's latency, and the guarded gateway under garak. Each part's title, settings shown and metric
columns are its `REPORT` in parts/<part>.py.

    from llmarch_lab.labs.guardrails.report import report
    for rep in report("guardrails"): rep.print()
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.labs.guardrails.parts import (
    bias,
    gateway,
    hallucination,
    injection,
    outside,
    pii,
    stack,
    support,
    toxicity,
    validation,
)
from llmarch_lab.store.tables import runs_table

PARTS = {m.__name__.rsplit(".", 1)[-1]: m.REPORT for m in (pii, injection, toxicity, validation, stack, gateway, outside,
                                                                  support, bias, hallucination)}
# part -> (title, settings shown, metric columns)


def report(suite: str) -> list[Report]:
    out = []
    for part, (title, settings, metrics) in PARTS.items():
        df = runs_table(suite, "guardrails", ["part", *settings], metrics)
        df = df[df["part"] == part].drop(columns=["part"]) if len(df) else df
        if df.empty:
            continue
        df = df.dropna(axis=1, how="all")
        if "pii_threshold" in df:  # a None parameter is logged as JSON null: the configuration's own
            df["pii_threshold"] = df["pii_threshold"].replace({"null": "(config's)", None: "(config's)"})
        name, _, what = title.partition(": ")
        rep = Report(f"{name} of suite {suite} ({what})", df.reset_index(drop=True), directions=directions_for(
            {c: m for c, m in metrics.items() if c in df}))
        if part == "injection" and {"p95_ms", "F1"} <= set(df.columns) and len(df) > 1:
            from llmarch_lab.labs.guardrails import plots

            rep.figures["injection_latency_vs_f1"] = plots.latency_vs_quality(
                df, "p95_ms", "F1", "detector", "injection: p95 latency vs F1 (Pareto ringed)")
        out.append(rep)
        if part == "outside" and "run_id" in df:
            out += _outside_sources(suite, df)
    return out


def _outside_sources(suite: str, df) -> list[Report]:
    """Per outside source, every detector's share flagged at its shipped threshold (benign FPR for
    benign sources, recall for attacks), from the runs' `outside_per_source` tables."""
    import pandas as pd

    from llmarch_lab.store.queries import load_table

    out = []
    for check, g in df.groupby("outside_check"):
        per = pd.concat([load_table(rid, "outside_per_source") for rid in g["run_id"]])
        per = per[per["threshold_rule"] == "as shipped"]
        table = per.pivot_table(index=["group", "label", "source", "kind"], columns="detector", values="value")
        table.insert(0, "n", per.groupby(["group", "label", "source", "kind"])["n"].max())
        out.append(Report(f"guardrails outside {check} of suite {suite} (per source, share flagged at the shipped "
                          "threshold: benign FPR for label 0, recall for label 1)", table.round(3).reset_index()))
    return out
