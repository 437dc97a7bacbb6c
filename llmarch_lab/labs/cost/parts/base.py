"""What the cost lab's parts share: `CostPart` (the fields every part has), the field mixins several
parts read, and the helpers they call (the two models' measured outcomes, out-of-fold routers).

    class PlanParams(TraceFields, BootField, FoldsField, OutcomeFields):
        part: Literal["plan"] = "plan"
        machine: str = Field("cpu-2vcpu", ...)

A part lists its mixins last to first (and lab.py its parts): pydantic orders the fields from the
deepest base up, so the flat CostParams keeps the order of its parameters cell.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab import LabError, paths
from llmarch_lab.config import EndpointFields
from llmarch_lab.results import Result

ROUTER_NAMES = ("random", "rule", "minilm-lr", "knn", "confidence", "cascade")


def slug(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


# ------------------------------------------------------------------------------------- fields

class CostPart(EndpointFields):
    """Every part: the two models (their aliases checked; tagged on every run) and the large
    model's endpoint (`base_url`, `api_key_env`)."""

    part: str = Field(description="What this run measures (see the module docstring).")
    small_model: str = Field("smollm2-135m-instruct", min_length=1,
                             description="Small model: an alias llama.cpp serves (models.py, gguf_parts.py) or a .gguf path.")
    large_model: str = Field("qwen2.5-coder-1.5b-instruct", min_length=1,
                             description="Large model: same kinds of spec (`make model-qwen` assembles the Qwen aliases); "
                                         "with base_url, the model name that endpoint serves (any HF id on a GPU host).")

    @model_validator(mode="after")
    def _two_models(self):
        for f in ("small_model", "large_model") if not self.base_url else ("small_model",):
            try:
                _check_alias(getattr(self, f))
            except LabError as e:
                raise ValueError(f"{f}: {e}") from None
        if self.small_model == self.large_model:
            raise ValueError("large_model: same as small_model; routing needs two models")
        return self


class OutcomeFields(CostPart):
    """The parts that measure both models on the sampled questions (routing, gateway, plan)."""

    pubmedqa_n: int = Field(150, ge=0, le=1000, description="PubMedQA questions (stratified by label; 0 = none).")
    gsm8k_n: int = Field(100, ge=0, le=1319, description="GSM8K test questions (random; 0 = none).")
    max_tokens: int = Field(256, ge=16, le=2048, description="Answer length cap for GSM8K worked answers.")
    threads: int = Field(2, ge=1, le=64, description="llama.cpp threads per engine.")

    @model_validator(mode="after")
    def _some_questions(self):
        if _reads(self, "pubmedqa_n") and not (self.pubmedqa_n or self.gsm8k_n):
            raise ValueError("pubmedqa_n and gsm8k_n: at least one must be > 0")
        return self


class RoutersField(CostPart):
    """The parts that train and score a list of routers (routing, routellm)."""

    routers: list[Literal["random", "rule", "minilm-lr", "knn", "confidence", "cascade"]] = Field(
        default_factory=lambda: list(ROUTER_NAMES), min_length=1, description="Routers to train and score.")


class FoldsField(CostPart):
    """The parts that score routers out-of-fold on our questions (routing, plan)."""

    cv_folds: int = Field(5, ge=2, le=20, description="Folds for out-of-fold router scores (every question gets a score from a router that did not train on it).")


class BootField(CostPart):
    """The parts with bootstrap intervals (routing, routellm, plan)."""

    n_boot: int = Field(500, ge=50, le=10000, description="Bootstrap resamples for APGR and plan intervals.")


class TraceFields(CostPart):
    """The parts that build a traffic trace of repeated questions (cache, plan)."""

    trace_requests: int = Field(3000, ge=10, le=1_000_000, description="Requests in the cache traffic trace.")
    repeat_rate: float = Field(0.3, ge=0.0, lt=1.0, description="Share of trace requests that ask an earlier intent again.")
    paraphrase_share: float = Field(0.5, ge=0.0, le=1.0, description="Of those, the share asked in other words (the rest verbatim).")
    zipf_s: float = Field(1.1, gt=0.0, le=5.0, description="Zipf exponent of intent popularity.")


class TargetFields(CostPart):
    """The parts that build a plan against the scenario's target (plan, scenario)."""

    machine: str = Field("cpu-2vcpu", min_length=1, description="Machine of the price table (experiments/cost/prices/prices.yaml) the models run on.")
    target_saving_pct: float = Field(50.0, gt=0.0, lt=100.0, description="Cost saving the plan must reach (%).")
    max_rel_loss_pct: float = Field(2.0, ge=0.0, le=100.0, description="Largest relative quality loss allowed (%).")
    plan_router: Literal["random", "rule", "minilm-lr", "knn", "confidence"] = Field(
        "minilm-lr", description="The router whose out-of-fold scores the plan's route lever uses.")
    route_thresholds: list[float] = Field(default_factory=lambda: [0.2, 0.35, 0.5, 0.65, 0.8],
                                          description="Router score thresholds (large-model share quantiles) tried by the plan.")


def _reads(p: CostPart, field: str) -> bool:
    """Whether this run reads `field`: always in a part's own model; in the flat CostParams only when
    the chosen part has it (set for another part, it is the parts check's error, naming the part)."""
    parts = getattr(type(p), "parts", None)
    return not parts or field in parts[p.part].model_fields


def _check_alias(spec: str) -> None:
    from llmarch_lab.assets import gguf_parts, models

    if spec not in (models.SMOLLM2, *gguf_parts.PARTED) and not spec.endswith(".gguf"):
        raise LabError(f"model {spec!r}: the cost lab serves models with llama.cpp: use an alias "
                       f"({', '.join([models.SMOLLM2, *gguf_parts.PARTED])}) or a .gguf path (a large model "
                       "on another server: set base_url to its OpenAI-compatible URL)")


# ------------------------------------------------------------------------------------- helpers

def run_dir(name: str):
    d = paths.cache_dir() / "cost-runs" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


class Served:
    """The large model on an endpoint someone else runs (vLLM on a GPU host, a hosted API): the
    same client as the lab's own engines (it must return chat log-probs, as vLLM and OpenAI do)."""

    def __init__(self, base_url: str, model: str, api_key_env: str):
        self.base_url, self.model_name, self.api_key_env = base_url, model, api_key_env

    def endpoint(self, **kw):
        from llmarch_lab.llm.endpoint import Endpoint

        return Endpoint(self.base_url, self.model_name, api_key_env=self.api_key_env, **kw)


def measured_outcomes(p: OutcomeFields):
    """(items, paired outcome frame, small rows, large rows): both models on the sampled questions
    (cached per model and question: a re-run measures only what is missing)."""
    import pandas as pd

    from llmarch_lab.labs.cost import outcomes

    parts = [outcomes.sample(t, n, seed=p.seed) for t, n in (("pubmedqa", p.pubmedqa_n), ("gsm8k", p.gsm8k_n)) if n]
    items = pd.concat(parts, ignore_index=True)
    logs = run_dir("engines")
    small = outcomes.measure(p.small_model, items, logs, max_tokens=p.max_tokens, threads=p.threads)
    served = Served(p.base_url, p.large_model, p.api_key_env) if p.base_url else None
    large = outcomes.measure(p.large_model, items, logs, max_tokens=p.max_tokens, threads=p.threads, engine=served)
    return items, outcomes.paired(items, small, large), small, large


def accuracy_metrics(res: Result, pairs) -> None:
    import numpy as np

    from llmarch_lab.common import stats

    for task, g in pairs.groupby("task"):
        for side, col in (("small", "weak"), ("large", "strong")):
            res.add(f"quality.{side}_{task}_accuracy", float(g[col].mean()))
        d = stats.paired_bootstrap(stats.mean_difference, g["strong"].to_numpy(), g["weak"].to_numpy(), seed=0)
        res.add(f"count.{task}_questions", len(g))
        res.add(f"quality.large_{task}_gain_vs_small_ci95_low", d["ci_low"])
        res.add(f"quality.large_{task}_gain_vs_small_ci95_high", d["ci_high"])
        res.tags[f"cost.{task}_large_minus_small"] = f"{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
    res.add("count.questions", len(pairs))
    res.tags["cost.outcome_rows"] = str(int(np.isfinite(pairs["weak"]).sum()))


def oof_router_table(p: FoldsField | BootField, pairs, names, n_boot: int | None = None):
    """(router table, curves, out-of-fold scores frame): every question scored by a router fitted
    on the other folds (stratified by task), then RouteLLM's evaluation over all of them.
    `p` has `seed`, `cv_folds` and `n_boot` (routing, plan)."""
    import pandas as pd

    from llmarch_lab.labs.cost import routing

    scores, pays, curves = {}, {}, {}
    for name in names:
        r = routing.make(name, seed=p.seed) if name == "random" else routing.make(name)
        scores[name] = routing.oof_scores(r, pairs, folds=p.cv_folds, seed=p.seed, stratify_col="task")
        pays[name] = r.pays_small_always
        curves[name] = routing.curve(scores[name], pairs["strong"].to_numpy(), pairs["weak"].to_numpy())
    # A small call's cost relative to a large one: the machine time both models took on these questions.
    ratio = float(pairs["small_seconds"].sum() / pairs["large_seconds"].sum())
    table = routing.evaluate_scores(scores, pairs, n_boot=p.n_boot if n_boot is None else n_boot, seed=p.seed,
                                    pays_small_always=pays, small_cost_ratio=ratio)
    table["small_cost_ratio"] = ratio
    return table, curves, pd.DataFrame({"qid": pairs["qid"], "task": pairs["task"], **scores})


def paraphrase_hit_rate(seed: int = 0) -> tuple[float, str]:
    """P(a paraphrase of an earlier question hits its answer) for the plan's trace: the chosen
    cache's label-aware hit rate on Quora dev pairs the verifier never saw (the dev file minus
    every pair that shares a question with dev_pairs(), a seeded sample of 2,000)."""
    from llmarch_lab.assets import datasets
    from llmarch_lab.labs.cost import cache

    train = cache.dev_pairs()
    seen = set(train["text_a"].str.strip()) | set(train["text_b"].str.strip())
    rest = datasets.qqp_pairs()
    rest = rest[~rest["text_a"].str.strip().isin(seen) & ~rest["text_b"].str.strip().isin(seen)]
    held = rest.sample(n=min(2000, len(rest)), random_state=seed).reset_index(drop=True)
    out = cache.eval_pairs(held, cache.CHOSEN, latency_sample=20)
    return float(out["hit_rate_label_aware"]), (
        f"{out['hit_rate_label_aware']:.3f}: the chosen cache on {len(held)} held-out Quora dev pairs "
        f"(wrong-hit {out['wrong_hit_rate_label_aware']:.4f} label-aware); a composed estimate")


def quantile_thresholds(scores, qs):
    """Router thresholds that send about each share in `qs` to the large model."""
    import numpy as np

    return sorted({float(np.quantile(scores, 1.0 - q)) for q in qs})
