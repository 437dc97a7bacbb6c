"""Part `scenario`: the seed's second scenario ("cut LLM cost by 50% at <= 2% quality loss") as a
study. Every lever is a measured configuration of the large model or a path around it (scenario/
measure.py: precision, batching, offline batches, context compression, prompt style, routing to
the small model, the semantic cache); the plan prices each request by measured machine time and
scores it by that configuration's own answer; every lever alone and combined, with paired-
bootstrap intervals, the recommendation on the upper bound of the loss interval, a Pareto plot and
a waterfall. The answers come from benchmarks/cost_scenario.py (resumable; `measure_missing`
measures here instead); configurations not measured on the whole sample are left out and listed."""

from __future__ import annotations

import json
import math
import time
from typing import Literal

from pydantic import Field

from llmarch_lab import LabError
from llmarch_lab.labs.cost.parts.base import (
    BootField,
    FoldsField,
    OutcomeFields,
    TargetFields,
    TraceFields,
    oof_router_table,
    paraphrase_hit_rate,
    quantile_thresholds,
    run_dir,
)
from llmarch_lab.results import Result


class ScenarioParams(TargetFields, TraceFields, BootField, FoldsField, OutcomeFields):
    part: Literal["scenario"] = "scenario"
    offline_share: float = Field(0.3, ge=0.0, le=1.0, description="Share of the traffic that may be answered in offline batches (the workload's statement).")
    replay_requests: int = Field(0, ge=0, le=1_000_000, description="Replay the first N trace requests through the recommended plan stood up for real "
                                                                     "(engines, router in the LiteLLM gateway, cache, compressor) and compare with its prediction; 0 = no replay.")
    measure_missing: bool = Field(False, description="Measure the configurations whose answers are missing (hours at the study's sample; "
                                                     "benchmarks/cost_scenario.py does the same). False: use what is measured and list the rest.")


REPORT = ("cost scenario: every lever measured, the plan", ["target_saving_pct", "max_rel_loss_pct", "offline_share"], {
    "saving_pct": "cost.plan_saving_pct", "rel_loss_pct": "quality.plan_relative_loss_pct",
    "loss_high": "quality.plan_relative_loss_pct_ci95_high", "configs": "count.scenario_configs"})


def _items(p: ScenarioParams):
    import pandas as pd

    from llmarch_lab.labs.cost import outcomes

    parts = [outcomes.sample(t, n, seed=p.seed) for t, n in (("pubmedqa", p.pubmedqa_n), ("gsm8k", p.gsm8k_n)) if n]
    return pd.concat(parts, ignore_index=True)


def _measured(p: ScenarioParams, items):
    from llmarch_lab.labs.cost.scenario import analysis, measure

    study = measure.study(p.large_model, p.small_model, p.max_tokens)
    if p.measure_missing:
        compressor = None
        for cfg, share in study:
            if cfg.compress != 1.0 and compressor is None:
                from llmarch_lab.labs.cost.scenario.compress import Compressor

                compressor = Compressor()
            n_p, n_g = (max(1, round(n * share)) if n else 0 for n in (p.pubmedqa_n, p.gsm8k_n))
            measure.run(cfg, run_dir("scenario"), n_p, n_g, compressor=compressor)
    got = analysis.load(study, items)
    for need in (analysis.BASE, "large-f16-c1"):
        if need not in got.answers:
            raise LabError(f"cost scenario: configuration {need} is not measured on this sample "
                           f"({got.missing.get(need)}); run benchmarks/cost_scenario.py --pubmedqa-n {p.pubmedqa_n} "
                           f"--gsm8k-n {p.gsm8k_n} (or set measure_missing=true)")
    return got


def _trace(p: ScenarioParams, items, got, res: Result):
    """(trace with router scores and cache outcomes, router threshold candidates, lookup seconds)."""
    import pandas as pd

    from llmarch_lab.labs.cost import cache, outcomes, workload

    large = got.rows["large-f16"].set_index("qid")
    small = got.rows.get("small-q4km")
    qs = items[items["qid"].isin(large.index)]
    if small is not None:
        qs = qs[qs["qid"].isin(set(small["qid"]))]
        pairs = outcomes.paired(qs, small, got.rows["large-f16"])
        # RouteLLM's evaluation of the plan's router, out of fold (0.5B vs 1.5B F16 answers).
        table, _, scores = oof_router_table(p, pairs, [p.plan_router], n_boot=p.n_boot)
        res.tables["router_table"] = table
        sc = scores[p.plan_router].to_numpy()
        thresholds = quantile_thresholds(sc, p.route_thresholds)
    else:
        pairs = outcomes.paired(qs, got.rows["large-f16"], got.rows["large-f16"])
        sc, thresholds = [1.0] * len(pairs), []
        res.tags["cost.route"] = "skipped: the small model is not measured on this sample"
    hit_rate, basis = paraphrase_hit_rate(p.seed)
    res.tags["cost.paraphrase_hit_rate"] = basis
    tr = workload.question_trace(pairs, sc, p.trace_requests, p.repeat_rate, p.paraphrase_share, p.zipf_s, p.seed)
    sem = cache.SemanticCache(cache.CHOSEN)  # models loaded before the clock starts
    sem.get("warm-up")
    t0 = time.perf_counter()
    tr = workload.with_cache(tr, sem, paraphrase_hit_rate=hit_rate, seed=p.seed)
    lookup_s = (time.perf_counter() - t0) / max(1, len(tr))
    tr = tr.assign(qid=tr["intent_id"])
    res.add("latency.cache_lookup_ms", 1000.0 * lookup_s)
    return pd.DataFrame(tr), thresholds, lookup_s, (pairs if small is not None else None)


def _compress_seconds(got, items) -> dict[float, float]:
    """Machine seconds the compressor spends per PubMedQA request, per measured ratio (timed on up
    to 20 abstracts of the sample)."""
    ratios = sorted({c.compress for k, c in got.configs.items() if k in got.answers and c.compress != 1.0})
    if not ratios:
        return {}
    from llmarch_lab.labs.cost.scenario.compress import Compressor

    comp = Compressor()
    texts = list(items.loc[items["task"] == "pubmedqa", "payload"].head(20))
    out = {}
    for r in ratios:
        t0 = time.perf_counter()
        for t in texts:
            comp.compress(t, r)
        out[r] = (time.perf_counter() - t0) / max(1, len(texts))
    return out


def run(p: ScenarioParams, res: Result) -> None:
    from llmarch_lab.labs.cost import costmodel, plan_plots
    from llmarch_lab.labs.cost.scenario import analysis, plan

    items = _items(p)
    got = _measured(p, items)
    res.tags["cost.scenario_missing"] = "; ".join(f"{k}: {v}" for k, v in got.missing.items()) or "none"
    res.add("count.scenario_configs", len(got.answers))
    levers = analysis.lever_table(got, items, n_boot=p.n_boot, seed=p.seed)
    style, style_rows = analysis.choose_style(got, p.max_rel_loss_pct)
    res.tags["cost.gsm8k_style"] = style
    trace, thresholds, lookup_s, pairs = _trace(p, items, got, res)
    compress_s = _compress_seconds(got, items)
    for r, secs in compress_s.items():
        res.add(f"latency.compressor_{r:g}x_ms", 1000.0 * secs)
    m = plan.Measured(trace, got.answers, got.seconds, compress_s, lookup_s)
    plans = plan.candidates(m, thresholds, offline_shares=(0.0, p.offline_share), styles=tuple(dict.fromkeys(("full", style))))
    table = plan.table(m, plans, n_resamples=p.n_boot, seed=p.seed)
    rec = plan.recommend(table, p.target_saving_pct, p.max_rel_loss_pct)
    usd_per_s = costmodel.machine(p.machine).usd_per_hour / 3600.0
    table["usd_per_1k_requests"] = table["cost_s_per_request"] * usd_per_s * 1000.0
    r = rec["row"]
    # A relative loss is undefined where the baseline scores 0 (tiny samples, some resamples): left out.
    values = {"cost.plan_saving_pct": rec["saving_pct"], "quality.plan_relative_loss_pct": rec["rel_loss_pct"]}
    for w in ("low", "high"):
        values[f"quality.plan_relative_loss_pct_ci95_{w}"] = r.get(f"loss_ci_{w}", math.nan)
        values[f"cost.plan_saving_pct_ci95_{w}"] = r.get(f"saving_ci_{w}", math.nan)
    for name, v in values.items():
        if math.isfinite(float(v)):
            res.add(name, float(v))
    res.add("count.trace_requests", len(trace))
    res.tags["cost.recommended"] = rec["plan"]
    res.tags["cost.recommendation_basis"] = rec["basis"]
    res.tags["cost.target_met"] = str(rec["met"])
    res.tables["lever_table"] = levers
    res.tables["style_table"] = _frame(style_rows)
    res.tables["plan_table"] = table.drop(columns=["spec"]).sort_values("cost_s_per_request")
    res.tables["trace"] = trace
    steps = plan.waterfall(m, rec["spec"], usd_per_s)
    res.tables["waterfall"] = steps
    res.texts["recommendation.json"] = json.dumps({k: v for k, v in rec.items() if k not in ("row", "spec")} |
                                                  {"spec": rec["spec"].__dict__}, indent=1, default=str)
    res.figures["pareto"] = plan_plots.pareto_plot(table, rec, title="cost vs quality of every plan (measured levers)")
    res.figures["waterfall"] = plan_plots.waterfall_plot(steps)
    if p.replay_requests:
        _replay(p, rec["spec"], m, items, pairs, res)


def _replay(p: ScenarioParams, spec, m, items, pairs, res: Result) -> None:
    """The recommended plan (its online path) stood up and the trace's first requests replayed;
    measured machine-seconds per request and quality against the plan's prediction for the same
    requests."""
    from dataclasses import replace

    from llmarch_lab.labs.cost.scenario import gguf_quant, plan, replay
    from llmarch_lab.llm import engines

    if pairs is None:
        raise LabError("cost scenario: replay_requests needs the small model's answers (the router is fitted on them)")
    spec = replace(spec, offline_share=0.0)
    head = m.trace.head(p.replay_requests).reset_index(drop=True)
    predicted = plan.row(replace(m, trace=head), spec, base=plan.evaluate(replace(m, trace=head), plan.Plan()))
    compressor = None
    if spec.compress != 1.0:
        from llmarch_lab.labs.cost.scenario.compress import Compressor

        compressor = Compressor()
    out = replay.run(spec, head, items, pairs, log_dir=run_dir("scenario-replay"),
                     large_gguf=str(gguf_quant.variant(p.large_model, spec.precision)),
                     small_gguf=str(engines.gguf_path(p.small_model)), router_name=p.plan_router,
                     max_tokens=p.max_tokens, compressor=compressor)
    s = out.summary
    res.add("cost.replay_machine_s_per_request", s["s_per_request"])
    res.add("cost.plan_machine_s_per_request", predicted["cost_s_per_request"])
    res.add("errors.replay_cost_vs_plan_pct", 100.0 * (s["s_per_request"] / predicted["cost_s_per_request"] - 1.0))
    res.add("quality.replay_quality", s["quality"])
    res.add("quality.plan_predicted_quality", predicted["quality"])
    if predicted["quality"]:  # undefined when the plan predicts no correct answer (tiny samples)
        res.add("errors.replay_quality_vs_plan_pct", 100.0 * (s["quality"] / predicted["quality"] - 1.0))
    res.tables["replay"] = out.requests
    res.tables["replay_vs_plan"] = _frame([
        {"what": "machine s/request", "plan": predicted["cost_s_per_request"], "replay": s["s_per_request"]},
        {"what": "quality", "plan": predicted["quality"], "replay": s["quality"]},
        {"what": "share cache", "plan": predicted["share_cache"], "replay": s["share_cache"]},
        {"what": "share small", "plan": predicted["share_small"], "replay": s["share_small"]}])
    res.tags["cost.replay"] = f"{s['plan']}: {s['requests']} requests, {s['wall_s']:.0f} s at {s['online_concurrency']} in flight"


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows)
