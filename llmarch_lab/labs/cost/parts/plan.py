"""Part `plan`: the cost model (measured speeds x the price table) and every lever alone and combined
on a trace of the measured questions: saving %, relative quality loss % with paired-bootstrap
intervals, the recommendation, a waterfall, LiteLLM's cost tracking checked against the lab's
arithmetic. It composes the routing part's outcomes and routers, the cache's hit rates and the
trace of the same suite."""

from __future__ import annotations

import json
from typing import Literal

from llmarch_lab.labs.cost.parts.base import (
    BootField,
    FoldsField,
    OutcomeFields,
    TargetFields,
    TraceFields,
    accuracy_metrics,
    measured_outcomes,
    oof_router_table,
    paraphrase_hit_rate,
    quantile_thresholds,
)
from llmarch_lab.results import Result


class PlanParams(TargetFields, TraceFields, BootField, FoldsField, OutcomeFields):
    part: Literal["plan"] = "plan"


REPORT = ("cost plan: levers on the trace, the recommendation", ["machine", "target_saving_pct", "max_rel_loss_pct"], {
    "saving_pct": "cost.plan_saving_pct", "rel_loss_pct": "quality.plan_relative_loss_pct",
    "large_usd_1m_out": "cost.large_usd_per_1m_output_tokens", "small_usd_1m_out": "cost.small_usd_per_1m_output_tokens",
    "litellm_diff_pct": "errors.max_abs_litellm_cost_diff_pct"})


def run(p: PlanParams, res: Result) -> None:
    from llmarch_lab.labs.cost import cache, costmodel, outcomes, plan, plan_plots, workload

    items, pairs, small, large = measured_outcomes(p)
    accuracy_metrics(res, pairs)
    sp_small, sp_large = outcomes.speeds(small), outcomes.speeds(large)
    measured = [{"model": p.small_model, "engine": "llamacpp", "concurrency": 1, **sp_small},
                {"model": p.large_model, "engine": "llamacpp", "concurrency": 1, **sp_large}]
    thr = costmodel.throughput_from_runs(models=[p.small_model, p.large_model], measured=measured, prefer="measured")
    m = costmodel.machine(p.machine)
    prices = plan.plan_prices(thr, m.usd_per_hour, small=p.small_model, large=p.large_model)
    for role in ("small", "large"):
        pr = prices[(role, "online")]
        res.add(f"cost.{role}_usd_per_1m_input_tokens", pr["usd_per_1m_input"])
        res.add(f"cost.{role}_usd_per_1m_output_tokens", pr["usd_per_1m_output"])
    # Router scores out-of-fold: no question is scored by a router that trained on it.
    _, _, scores = oof_router_table(p, pairs, [p.plan_router], n_boot=0)
    hit_rate, basis = paraphrase_hit_rate(p.seed)
    tr = workload.question_trace(pairs, scores[p.plan_router].to_numpy(), p.trace_requests, p.repeat_rate,
                                 p.paraphrase_share, p.zipf_s, p.seed)
    tr = workload.with_cache(tr, cache.SemanticCache(cache.CHOSEN), paraphrase_hit_rate=hit_rate, seed=p.seed)
    res.add("quality.paraphrase_hit_rate", hit_rate)
    res.tags["cost.paraphrase_hit_rate"] = basis
    # Batch pricing needs a measured higher-concurrency throughput for both models (serving runs);
    # llama-cpp-python answers one request at a time, so without those the lever is left out.
    has_batch = any(prices[(r, "batch")] != prices[(r, "online")] for r in ("small", "large") if (r, "batch") in prices)
    table = plan.lever_table(tr, prices, route_thresholds=quantile_thresholds(scores[p.plan_router], p.route_thresholds),
                             cache_columns=["cache_outcome"], batch=has_batch, n_resamples=p.n_boot, seed=p.seed)
    if not has_batch:
        res.tags["cost.batch"] = "skipped: no higher-concurrency throughput measured for both models (serving-lab runs)"
    res.add("count.trace_requests", len(tr))
    res.tags["cost.trace"] = (f"{len(tr)} requests over {len(pairs)} measured questions (repeat rate {p.repeat_rate}, "
                              f"paraphrase share {p.paraphrase_share}, zipf {p.zipf_s}, seed {p.seed})")
    rec = plan.recommend(table, target_saving_pct=p.target_saving_pct, max_rel_loss_pct=p.max_rel_loss_pct)
    for k, v in plan.plan_metrics(table, rec).items():
        res.add(k, v)
    res.tables["lever_table"] = table
    res.tables["trace"] = tr
    res.texts["recommendation.json"] = json.dumps({k: v for k, v in rec.items() if k != "levers"}, indent=1, default=str)
    res.figures["pareto"] = plan_plots.pareto_plot(table, rec)
    res.figures["waterfall"] = plan_plots.waterfall_plot(plan.waterfall_steps(tr, rec["levers"], prices))
    req = tr.assign(model=p.large_model, prompt_tokens=tr["large_prompt_tokens"], output_tokens=tr["large_output_tokens"])
    chk = costmodel.litellm_check(req[["model", "prompt_tokens", "output_tokens"]].head(200),
                                  {p.large_model: prices[("large", "online")]})
    res.add("errors.max_abs_litellm_cost_diff_pct", 100.0 * float(chk.attrs["max_rel_diff"]))
    res.tables["litellm_check"] = chk
    res.tags["cost.notes"] = "; ".join(table.attrs.get("notes", [])) or "all levers evaluated"
    res.tags["cost.recommended"] = str(rec.get("plan"))
