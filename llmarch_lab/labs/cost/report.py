"""The cost lab's suite tables, one per part that ran: routers on our two models, routers on
RouteLLM's outcomes, the semantic cache, the routed gateway, and the plan. Each part's title,
settings shown and metric columns are its `REPORT` in parts/<part>.py.

    from llmarch_lab.labs.cost.report import report
    for rep in report("cost"): rep.print()
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.labs.cost.parts import cache, gateway, plan, routellm, routing, scenario
from llmarch_lab.store.tables import runs_table

PARTS = {  # part -> (title, settings shown, metric columns)
    "routing": routing.REPORT, "routellm": routellm.REPORT, "cache": cache.REPORT, "gateway": gateway.REPORT,
    "plan": plan.REPORT, "scenario": scenario.REPORT,
}


def report(suite: str) -> list[Report]:
    out = []
    for part, (title, settings, metrics) in PARTS.items():
        df = runs_table(suite, "cost", ["part", *settings], metrics)
        df = df[df["part"] == part].drop(columns=["part"]) if len(df) else df
        if df.empty:
            continue
        df = df.dropna(axis=1, how="all")
        name, _, what = title.partition(": ")
        out.append(Report(f"{name} of suite {suite} ({what})", df.reset_index(drop=True),
                          directions=directions_for({c: m for c, m in metrics.items() if c in df})))
    return out
