"""Part `routing`: both models on a stratified PubMedQA sample and a random GSM8K sample with exact
scoring; every router scored out-of-fold; RouteLLM's evaluation (quality vs large-model share,
APGR, share at 50/80/95% of the gap); measured prefill/decode speeds of both models."""

from __future__ import annotations

from typing import Literal

from llmarch_lab.labs.cost.parts.base import (
    ROUTER_NAMES,
    BootField,
    FoldsField,
    OutcomeFields,
    RoutersField,
    accuracy_metrics,
    measured_outcomes,
    oof_router_table,
    slug,
)
from llmarch_lab.results import Result


class RoutingParams(BootField, FoldsField, RoutersField, OutcomeFields):
    part: Literal["routing"] = "routing"


_ROUTERS = tuple(slug(r) for r in ROUTER_NAMES)
REPORT = ("cost routing: small vs large model, routers out-of-fold", ["small_model", "large_model"], {
    "small_pubmedqa": "quality.small_pubmedqa_accuracy", "large_pubmedqa": "quality.large_pubmedqa_accuracy",
    "small_gsm8k": "quality.small_gsm8k_accuracy", "large_gsm8k": "quality.large_gsm8k_accuracy",
    **{f"apgr_{r}": f"quality.apgr_{r}" for r in _ROUTERS},
    **{f"share95_{r}": f"cost.large_share_at_95pct_gap_{r}" for r in _ROUTERS}})


def run(p: RoutingParams, res: Result) -> None:
    import numpy as np

    from llmarch_lab.labs.cost import outcomes, routing

    items, pairs, small, large = measured_outcomes(p)
    accuracy_metrics(res, pairs)
    for side, df in (("small", small), ("large", large)):
        sp = outcomes.speeds(df)
        for k, name in (("prefill_tok_s", "prefill"), ("decode_tok_s", "decode")):
            if np.isfinite(sp[k]):  # decode needs GSM8K answers: gsm8k_n=0 measures prefill only
                res.add(f"throughput.{side}_{name}_tok_per_s", sp[k])
    table, curves, scores = oof_router_table(p, pairs, p.routers)
    for r in table.itertuples():
        s = slug(r.router)
        res.add(f"quality.apgr_{s}", r.apgr)
        res.add(f"cost.large_share_at_50pct_gap_{s}", r.share_50)
        res.add(f"cost.large_share_at_80pct_gap_{s}", r.share_80)
        res.add(f"cost.large_share_at_95pct_gap_{s}", r.share_95)
        res.add(f"cost.saving_pct_at_95pct_gap_{s}", 100.0 * (1.0 - r.cost_95))
        res.add(f"cost.saving_ratio_vs_random_at_50pct_gap_{s}", r.cost_saving_50)
    res.tables["router_table"] = table
    res.add("quality.oracle_accuracy", float(pairs[["weak", "strong"]].max(axis=1).mean()))
    res.tables["outcomes"] = pairs
    res.tables["router_scores"] = scores
    res.figures["routing_curves"] = routing.curves_plot(curves, float(pairs["strong"].mean()), float(pairs["weak"].mean()),
                                                         f"{p.small_model} vs {p.large_model}: PubMedQA + GSM8K (out-of-fold)")
    res.tags["cost.router_eval"] = f"{p.cv_folds}-fold out-of-fold scores over {len(pairs)} questions"
