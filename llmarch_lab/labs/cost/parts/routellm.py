"""Part `routellm`: the same routers on RouteLLM's precomputed GPT-4 vs Mixtral outcomes (GSM8K,
MMLU, MT-Bench, contaminated prompts dropped), beside the paper's published numbers: it validates
the routing part's routers on outside data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.cost.parts.base import BootField, RoutersField, slug
from llmarch_lab.results import Result


class RoutellmParams(BootField, RoutersField):
    part: Literal["routellm"] = "routellm"
    benches: list[Literal["gsm8k", "mmlu", "mt_bench"]] = Field(
        default_factory=lambda: ["gsm8k", "mmlu", "mt_bench"], min_length=1, description="RouteLLM benchmarks to replicate on.")


REPORT = ("cost routellm: our routers on RouteLLM's GPT-4 vs Mixtral outcomes (in-domain)", [], {
    f"apgr_{b}_{r}": f"quality.apgr_{b}_{r}" for b in ("gsm8k", "mmlu", "mt_bench")
    for r in ("random", "rule", "minilm_lr", "knn")})


def run(p: RoutellmParams, res: Result) -> None:
    from llmarch_lab.labs.cost import routing

    routers = tuple(r for r in p.routers if r not in ("confidence", "cascade"))
    table = routing.routellm_replication(benches=tuple(p.benches), seed=p.seed, routers=routers, n_boot=p.n_boot)
    for r in table.itertuples():
        res.add(f"quality.apgr_{slug(r.bench)}_{slug(r.router)}", r.apgr)
        res.add(f"cost.large_share_at_50pct_gap_{slug(r.bench)}_{slug(r.router)}", r.share_50)
        res.add(f"cost.large_share_at_80pct_gap_{slug(r.bench)}_{slug(r.router)}", r.share_80)
    res.tables["routellm_ours"] = table
    res.tables["routellm_published"] = routing.published()
    res.tags["cost.routellm_note"] = ("ours: trained in-domain on half of each benchmark (out-of-fold); "
                                      "published: trained on Chatbot Arena preferences (Ong et al. 2024)")
