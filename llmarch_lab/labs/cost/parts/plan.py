"""Part `plan`: the cost model (measured speeds x the price table) and every lever alone and combined
on a trace of the measured questions: saving %, relative quality loss % with paired-bootstrap
intervals, the recommendation, a waterfall, LiteLLM's cost tracking checked against the lab's
arithmetic. It composes the routing part's outcomes and routers, the cache's hit rates and the
trace of the same suite."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from llmarch_lab.labs.cost.parts.base import (
    BootField,
    FoldsField,
    OutcomeFields,
    TraceFields,
    accuracy_metrics,
    measured_outcomes,
    oof_router_table,
)
from llmarch_lab.results import Result


class PlanParams(TraceFields, BootField, FoldsField, OutcomeFields):
    part: Literal["plan"] = "plan"
    machine: str = Field("cpu-2vcpu", min_length=1, description="Machine of the price table (experiments/cost/prices/prices.yaml) the models run on.")
    target_saving_pct: float = Field(50.0, gt=0.0, lt=100.0, description="Cost saving the plan must reach (%).")
    max_rel_loss_pct: float = Field(2.0, ge=0.0, le=100.0, description="Largest relative quality loss allowed (%).")
    plan_router: Literal["random", "rule", "minilm-lr", "knn", "confidence"] = Field(
        "minilm-lr", description="The router whose out-of-fold scores the plan's route lever uses.")
    route_thresholds: list[float] = Field(default_factory=lambda: [0.2, 0.35, 0.5, 0.65, 0.8],
                                          description="Router score thresholds (large-model share quantiles) tried by the plan.")


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
    hit_rate, basis = _paraphrase_hit_rate(p)
    tr = workload.question_trace(pairs, scores[p.plan_router].to_numpy(), p.trace_requests, p.repeat_rate,
                                 p.paraphrase_share, p.zipf_s, p.seed)
    tr = workload.with_cache(tr, cache.SemanticCache(cache.CHOSEN), paraphrase_hit_rate=hit_rate, seed=p.seed)
    res.add("quality.paraphrase_hit_rate", hit_rate)
    res.tags["cost.paraphrase_hit_rate"] = basis
    # Batch pricing needs a measured higher-concurrency throughput for both models (serving runs);
    # llama-cpp-python answers one request at a time, so without those the lever is left out.
    has_batch = any(prices[(r, "batch")] != prices[(r, "online")] for r in ("small", "large") if (r, "batch") in prices)
    table = plan.lever_table(tr, prices, route_thresholds=_quantile_thresholds(scores[p.plan_router], p.route_thresholds),
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


def _paraphrase_hit_rate(p: PlanParams) -> tuple[float, str]:
    """P(a paraphrase of an earlier question hits its answer) for the plan's trace: the chosen
    cache's label-aware hit rate on Quora dev pairs the verifier never saw (the dev file minus
    every pair that shares a question with dev_pairs(), a seeded sample of 2,000)."""
    from llmarch_lab.assets import datasets
    from llmarch_lab.labs.cost import cache

    train = cache.dev_pairs()
    seen = set(train["text_a"].str.strip()) | set(train["text_b"].str.strip())
    rest = datasets.qqp_pairs()
    rest = rest[~rest["text_a"].str.strip().isin(seen) & ~rest["text_b"].str.strip().isin(seen)]
    held = rest.sample(n=min(2000, len(rest)), random_state=p.seed).reset_index(drop=True)
    out = cache.eval_pairs(held, cache.CHOSEN, latency_sample=20)
    return float(out["hit_rate_label_aware"]), (
        f"{out['hit_rate_label_aware']:.3f}: the chosen cache on {len(held)} held-out Quora dev pairs "
        f"(wrong-hit {out['wrong_hit_rate_label_aware']:.4f} label-aware); a composed estimate")


def _quantile_thresholds(scores, qs):
    import numpy as np

    return sorted({float(np.quantile(scores, 1.0 - q)) for q in qs})
