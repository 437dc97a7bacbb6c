"""Cost lab: "cut our LLM cost by half while keeping quality", as a measured plan.

    llmarch-lab run experiments/cost.yaml                 # every part (resumable)
    llmarch-lab run cost --only routing                   # one part
    llmarch-lab cache eval --pairs F.jsonl[.gz]           # the chosen semantic cache on any pairs file

One run measures one `part`:
    routing     both models (small: SmolLM2-135M, large: Qwen2.5-Coder-1.5B, both llama.cpp) on a
                stratified PubMedQA sample and a random GSM8K sample with exact scoring; every
                router trained on a train split and scored out-of-fold / on the test split; the
                RouteLLM evaluation (quality vs large-model share, APGR, share at 50/80/95% of the
                gap); measured prefill/decode speeds of both models
    routellm    the same routers on RouteLLM's precomputed GPT-4 vs Mixtral outcomes (GSM8K, MMLU,
                MT-Bench, contaminated prompts dropped), beside the paper's published numbers
    cache       the semantic cache on the Quora dev pairs (every text_a cached, every text_b asked):
                hit rate vs wrong-hit rate by threshold, with and without the pair verifier, vs
                GPTCache; FAISS vs LanceDB lookup latency; a Zipf traffic trace replayed
    gateway     the chosen router inside a LiteLLM proxy in front of the two llama.cpp engines:
                router and proxy overhead on TTFT, measured large share vs the offline one
    plan        the cost model (measured speeds x the price table) and every lever alone and
                combined on a trace of the measured questions: saving %, relative quality loss %
                with paired-bootstrap intervals, the recommendation, a waterfall, LiteLLM's cost
                tracking checked against the lab's arithmetic
    scenario    the seed's scenario as a study (Cost v2): every lever a measured configuration of
                the large model (precision, batching, offline batches, context compression, prompt
                style) or a path around it (routing to the 0.5B, the semantic cache), priced by
                measured machine time per request; every lever alone and combined with intervals,
                the recommendation on the loss interval's upper bound (benchmarks/cost_scenario.py
                measures the answers; experiments/cost_v2.yaml)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmarch_lab.labs.cost.parts import cache, gateway, plan, routellm, routing, scenario
from llmarch_lab.labs.cost.parts.base import ROUTER_NAMES, slug
from llmarch_lab.labs.cost.parts.cache import CacheParams
from llmarch_lab.labs.cost.parts.gateway import GatewayParams
from llmarch_lab.labs.cost.parts.plan import PlanParams
from llmarch_lab.labs.cost.parts.routellm import RoutellmParams
from llmarch_lab.labs.cost.parts.routing import RoutingParams
from llmarch_lab.labs.cost.parts.scenario import ScenarioParams
from llmarch_lab.parts import PartsParams
from llmarch_lab.results import Result

__all__ = ["PARTS", "ROUTER_NAMES", "CostParams", "run", "slug"]

PARTS = ("routing", "routellm", "cache", "gateway", "plan", "scenario")
_MODULES = {"routing": routing, "routellm": routellm, "cache": cache, "gateway": gateway, "plan": plan,
            "scenario": scenario}


# Every part's fields in one flat model (the notebook's parameters cell, `llmarch-lab list`); a field
# of another part is an error naming the part, and each part's code sees only its own model
# (`part_params()`, parts/<part>.py). The parts are listed last to first: pydantic orders the
# fields from the deepest base up, so they come out in the order of the parts.
class CostParams(PartsParams, ScenarioParams, PlanParams, GatewayParams, CacheParams, RoutellmParams, RoutingParams):
    lab = "cost"
    key_metrics = ("quality.apgr_minilm_lr", "quality.apgr_mt_bench_minilm_lr", "quality.cache_hit_rate", "errors.cache_wrong_hit_rate",
                   "cost.plan_saving_pct", "quality.plan_relative_loss_pct", "latency.router_overhead_ms")
    parts = {"routing": RoutingParams, "routellm": RoutellmParams, "cache": CacheParams,
             "gateway": GatewayParams, "plan": PlanParams, "scenario": ScenarioParams}

    part: Literal["routing", "routellm", "cache", "gateway", "plan", "scenario"] = Field(
        "routing", description="What this run measures (see the module docstring).")


def run(p: CostParams) -> Result:
    res = Result(tags={"cost.part": p.part, "cost.small_model": p.small_model, "cost.large_model": p.large_model})
    _MODULES[p.part].run(p.part_params(), res)
    return res
