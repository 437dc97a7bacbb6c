"""The cost lab's suite tables, one per part that ran: routers on our two models, routers on
RouteLLM's outcomes, the semantic cache, the routed gateway, and the plan.

    from llmarch_lab.labs.cost.report import report
    for rep in report("cost"): rep.print()
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store.tables import runs_table

ROUTERS = ("random", "rule", "minilm_lr", "knn", "confidence", "cascade")
ROUTING = {"small_pubmedqa": "quality.small_pubmedqa_accuracy", "large_pubmedqa": "quality.large_pubmedqa_accuracy",
           "small_gsm8k": "quality.small_gsm8k_accuracy", "large_gsm8k": "quality.large_gsm8k_accuracy",
           **{f"apgr_{r}": f"quality.apgr_{r}" for r in ROUTERS},
           **{f"share95_{r}": f"cost.large_share_at_95pct_gap_{r}" for r in ROUTERS}}
ROUTELLM = {f"apgr_{b}_{r}": f"quality.apgr_{b}_{r}" for b in ("gsm8k", "mmlu", "mt_bench")
            for r in ("random", "rule", "minilm_lr", "knn")}
CACHE = {"hit_rate": "quality.cache_hit_rate", "wrong_hit_rate": "errors.cache_wrong_hit_rate",
         "gptcache_hit_rate": "quality.gptcache_hit_rate", "gptcache_wrong_hit_rate": "errors.gptcache_wrong_hit_rate",
         "trace_hit_rate": "quality.trace_hit_rate", "trace_wrong_hit_rate": "errors.trace_wrong_hit_rate",
         "calls_saved": "cost.large_calls_saved_share", "hit_p50_ms": "latency.cache_hit_ms_p50",
         "miss_p50_ms": "latency.cache_miss_ms_p50"}
GATEWAY = {"router_overhead_ms": "latency.router_overhead_ms", "proxy_overhead_ms": "latency.proxy_overhead_ms",
           "large_share": "count.gateway_large_share", "share_diff": "errors.large_share_abs_diff"}
PLAN = {"saving_pct": "cost.plan_saving_pct", "rel_loss_pct": "quality.plan_relative_loss_pct",
        "large_usd_1m_out": "cost.large_usd_per_1m_output_tokens", "small_usd_1m_out": "cost.small_usd_per_1m_output_tokens",
        "litellm_diff_pct": "errors.max_abs_litellm_cost_diff_pct"}

PARTS = {  # part -> (title, settings shown, metric columns)
    "routing": ("cost routing: small vs large model, routers out-of-fold", ["small_model", "large_model"], ROUTING),
    "routellm": ("cost routellm: our routers on RouteLLM's GPT-4 vs Mixtral outcomes (in-domain)", [], ROUTELLM),
    "cache": ("cost cache: Quora dev pairs and a Zipf trace", ["repeat_rate", "paraphrase_share"], CACHE),
    "gateway": ("cost gateway: the router in a LiteLLM proxy", ["gateway_router"], GATEWAY),
    "plan": ("cost plan: levers on the trace, the recommendation", ["machine", "target_saving_pct", "max_rel_loss_pct"], PLAN),
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
