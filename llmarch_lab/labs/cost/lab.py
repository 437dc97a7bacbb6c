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
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab import LabError, paths
from llmarch_lab.config import EndpointFields
from llmarch_lab.results import Result

PARTS = ("routing", "routellm", "cache", "gateway", "plan")
ROUTER_NAMES = ("random", "rule", "minilm-lr", "knn", "confidence", "cascade")


def slug(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


class CostParams(EndpointFields):
    lab = "cost"
    key_metrics = ("quality.apgr_minilm_lr", "quality.apgr_mt_bench_minilm_lr", "quality.cache_hit_rate", "errors.cache_wrong_hit_rate",
                   "cost.plan_saving_pct", "quality.plan_relative_loss_pct", "latency.router_overhead_ms")

    part: Literal["routing", "routellm", "cache", "gateway", "plan"] = Field(
        "routing", description="What this run measures (see the module docstring).")
    small_model: str = Field("smollm2-135m-instruct", min_length=1,
                             description="Small model: an alias llama.cpp serves (models.py, gguf_parts.py) or a .gguf path.")
    large_model: str = Field("qwen2.5-coder-1.5b-instruct", min_length=1,
                             description="Large model: same kinds of spec (`make model-qwen` assembles the Qwen aliases); "
                                         "with base_url, the model name that endpoint serves (any HF id on a GPU host).")
    pubmedqa_n: int = Field(150, ge=0, le=1000, description="PubMedQA questions (stratified by label; 0 = none).")
    gsm8k_n: int = Field(100, ge=0, le=1319, description="GSM8K test questions (random; 0 = none).")
    max_tokens: int = Field(256, ge=16, le=2048, description="Answer length cap for GSM8K worked answers.")
    threads: int = Field(2, ge=1, le=64, description="llama.cpp threads per engine.")
    routers: list[Literal["random", "rule", "minilm-lr", "knn", "confidence", "cascade"]] = Field(
        default_factory=lambda: list(ROUTER_NAMES), min_length=1, description="Routers to train and score.")
    cv_folds: int = Field(5, ge=2, le=20, description="Folds for out-of-fold router scores (every question gets a score from a router that did not train on it).")
    n_boot: int = Field(500, ge=50, le=10000, description="Bootstrap resamples for APGR and plan intervals.")
    # routellm
    benches: list[Literal["gsm8k", "mmlu", "mt_bench"]] = Field(
        default_factory=lambda: ["gsm8k", "mmlu", "mt_bench"], min_length=1, description="RouteLLM benchmarks to replicate on.")
    # cache
    cache_pairs: int = Field(0, ge=0, le=1_000_000, description="Quora dev pairs (0 = the fixed 20,000-pair dev subset, cache.dev_pairs(), the chosen cache was measured on; else a seeded sample of the 60,168).")
    trace_requests: int = Field(3000, ge=10, le=1_000_000, description="Requests in the cache traffic trace.")
    repeat_rate: float = Field(0.3, ge=0.0, lt=1.0, description="Share of trace requests that ask an earlier intent again.")
    paraphrase_share: float = Field(0.5, ge=0.0, le=1.0, description="Of those, the share asked in other words (the rest verbatim).")
    near_miss_share: float = Field(0.1, ge=0.0, lt=1.0, description="Share of new requests that are near-misses of an earlier one (non-duplicate Quora pairs).")
    zipf_s: float = Field(1.1, gt=0.0, le=5.0, description="Zipf exponent of intent popularity.")
    # gateway
    gateway_router: Literal["random", "rule", "minilm-lr", "knn"] = Field(
        "minilm-lr", description="The router deployed in the gateway (text-only routers: the gateway routes before any model answers).")
    gateway_requests: int = Field(20, ge=4, le=1000, description="Requests timed per path (direct, proxy, routed).")
    gateway_max_tokens: int = Field(16, ge=1, le=512, description="Output tokens per gateway request.")
    # plan
    machine: str = Field("cpu-2vcpu", min_length=1, description="Machine of the price table (experiments/cost/prices/prices.yaml) the models run on.")
    target_saving_pct: float = Field(50.0, gt=0.0, lt=100.0, description="Cost saving the plan must reach (%).")
    max_rel_loss_pct: float = Field(2.0, ge=0.0, le=100.0, description="Largest relative quality loss allowed (%).")
    plan_router: Literal["random", "rule", "minilm-lr", "knn", "confidence"] = Field(
        "minilm-lr", description="The router whose out-of-fold scores the plan's route lever uses.")
    route_thresholds: list[float] = Field(default_factory=lambda: [0.2, 0.35, 0.5, 0.65, 0.8],
                                          description="Router score thresholds (large-model share quantiles) tried by the plan.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.part in ("routing", "gateway", "plan") and not (self.pubmedqa_n or self.gsm8k_n):
            raise ValueError("pubmedqa_n and gsm8k_n: at least one must be > 0")
        for f in ("small_model", "large_model") if not self.base_url else ("small_model",):
            try:
                _check_alias(getattr(self, f))
            except LabError as e:
                raise ValueError(f"{f}: {e}") from None
        if self.small_model == self.large_model:
            raise ValueError("large_model: same as small_model; routing needs two models")
        return self


def run(p: CostParams) -> Result:
    res = Result(tags={"cost.part": p.part, "cost.small_model": p.small_model, "cost.large_model": p.large_model})
    {"routing": _routing, "routellm": _routellm, "cache": _cache, "gateway": _gateway, "plan": _plan}[p.part](p, res)
    return res


# ------------------------------------------------------------------------------------- shared

def _run_dir(name: str):
    d = paths.cache_dir() / "cost-runs" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


class _Served:
    """The large model on an endpoint someone else runs (vLLM on a GPU host, a hosted API): the
    same client as the lab's own engines (it must return chat log-probs, as vLLM and OpenAI do)."""

    def __init__(self, base_url: str, model: str, api_key_env: str):
        self.base_url, self.model_name, self.api_key_env = base_url, model, api_key_env

    def endpoint(self, **kw):
        from llmarch_lab.llm.endpoint import Endpoint

        return Endpoint(self.base_url, self.model_name, api_key_env=self.api_key_env, **kw)


def measured_outcomes(p: CostParams):
    """(items, paired outcome frame, small rows, large rows): both models on the sampled questions
    (cached per model and question: a re-run measures only what is missing)."""
    import pandas as pd

    from llmarch_lab.labs.cost import outcomes

    parts = [outcomes.sample(t, n, seed=p.seed) for t, n in (("pubmedqa", p.pubmedqa_n), ("gsm8k", p.gsm8k_n)) if n]
    items = pd.concat(parts, ignore_index=True)
    logs = _run_dir("engines")
    small = outcomes.measure(p.small_model, items, logs, max_tokens=p.max_tokens, threads=p.threads)
    served = _Served(p.base_url, p.large_model, p.api_key_env) if p.base_url else None
    large = outcomes.measure(p.large_model, items, logs, max_tokens=p.max_tokens, threads=p.threads, engine=served)
    return items, outcomes.paired(items, small, large), small, large


def _accuracy_metrics(res: Result, pairs) -> None:
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


# ------------------------------------------------------------------------------------- parts

def _routing(p: CostParams, res: Result) -> None:
    import numpy as np

    from llmarch_lab.labs.cost import outcomes, routing

    items, pairs, small, large = measured_outcomes(p)
    _accuracy_metrics(res, pairs)
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


def _routellm(p: CostParams, res: Result) -> None:
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


def _cache(p: CostParams, res: Result) -> None:
    import numpy as np
    import pandas as pd

    from llmarch_lab.assets import datasets
    from llmarch_lab.labs.cost import cache, trace

    dev = cache.dev_pairs() if not p.cache_pairs else datasets.qqp_pairs().sample(
        n=p.cache_pairs, random_state=p.seed).reset_index(drop=True)
    # Out-of-fold: 3 folds by connected question group, each verifier trained on the other two.
    r, probs, fold = cache.crossfit(dev, n_folds=3, top_k=3, model="hgb")
    grids = {"plain cosine": cache.grid(dev, r, None, cache.COS_GRID),
             "cosine + verifier": cache.grid(dev, r, probs, cache.COS_GRID, cache.PROB_GRID)}
    f0 = fold == 0
    peer = dev[f0].reset_index(drop=True)
    gpt_summary, gpt_grid = cache.gptcache_eval(peer, 0.9, thresholds=[round(0.80 + 0.005 * i, 3) for i in range(40)],
                                                latency_sample=50, progress=False)
    fold0 = {"gptcache (fold 0)": gpt_grid,
             "plain cosine (fold 0)": cache.grid(dev, r, None, cache.COS_GRID, rows_mask=f0),
             "cosine + verifier (fold 0)": cache.grid(dev, r, probs, cache.COS_GRID, cache.PROB_GRID, rows_mask=f0)}
    rows = []
    for name, g in {**grids, **fold0}.items():
        for w in (0.005, 0.01, 0.02):
            b = cache.best_at(g, w)
            rows.append({"system": name, "max_wrong_hit_rate": w, "hit_rate": b["hit_rate"],
                         "wrong_hit_rate": b["wrong_hit_rate"], "threshold": b.get("threshold"),
                         "verifier_threshold": b.get("verifier_threshold")})
    table = pd.DataFrame(rows)
    res.tables["cache_at_wrong_hit"] = table
    key = {"plain cosine": "plain", "cosine + verifier": "verified", "gptcache (fold 0)": "gptcache_fold0",
           "plain cosine (fold 0)": "plain_fold0", "cosine + verifier (fold 0)": "verified_fold0"}
    for t in table.itertuples():
        res.add(f"quality.{key[t.system]}_hit_rate_at_{int(round(t.max_wrong_hit_rate * 1000))}pm_wrong", t.hit_rate)
    chosen = cache.grid(dev, r, probs, [cache.CHOSEN.threshold], [cache.CHOSEN.verifier_threshold]).iloc[0]
    res.add("quality.cache_hit_rate", chosen["hit_rate"])
    res.add("errors.cache_wrong_hit_rate", chosen["wrong_hit_rate"])
    for f in range(3):
        g = cache.grid(dev, r, probs, [cache.CHOSEN.threshold], [cache.CHOSEN.verifier_threshold], rows_mask=fold == f).iloc[0]
        res.tags[f"cost.cache_fold{f}"] = f"hit {g['hit_rate']:.3f} at wrong-hit {g['wrong_hit_rate']:.4f}"
    res.figures["cache_hit_vs_wrong"] = cache.sweep_plot({k: v for k, v in {**grids, **fold0}.items()}, max_wrong=0.03)
    vecs = np.asarray(cache.embed(list(dict.fromkeys(dev["text_a"].str.strip()))), dtype="float32")
    lat = cache.index_latency(vecs)
    for k, v in lat.items():
        if k.startswith(("faiss_ms", "lancedb_ms")):
            res.add(f"latency.index_{k}", v)
    res.tags["cost.index_same_top1_share"] = f"{lat['same_top1_share']:.3f} over {lat['n_entries']} entries"
    res.texts["cache_config.json"] = json.dumps(cache.CHOSEN.to_dict(), indent=1)
    res.tags["cost.cache_numbers"] = (f"label-aware hit / wrong-hit, out-of-fold over {len(dev)} dev pairs "
                                      "(3 group folds); GPTCache and its matched rows on fold 0 only")
    tr = trace.build_trace(p.trace_requests, p.repeat_rate, p.paraphrase_share, p.near_miss_share, p.zipf_s, p.seed)
    rep = trace.replay(cache.SemanticCache(cache.CHOSEN), tr)
    summ = trace.summary(rep)
    res.add("quality.trace_hit_rate", summ["hit_rate"])
    res.add("errors.trace_wrong_hit_rate", summ["wrong_hit_rate"])
    res.add("cost.large_calls_saved_share", summ["large_calls_saved_share"])
    for k, v in summ.items():
        if k.startswith("latency_") and v is not None:
            res.add("latency.trace_" + k.removeprefix("latency_"), v)
    res.tables["trace_replay"] = rep
    res.tags["cost.trace"] = (f"{p.trace_requests} requests, repeat {p.repeat_rate}, paraphrase share "
                              f"{p.paraphrase_share}, near-miss {p.near_miss_share}, zipf {p.zipf_s}, seed {p.seed}; "
                              "the verifier was trained on dev_pairs(), which the trace's Quora texts may overlap")


def _paraphrase_hit_rate(p: CostParams) -> tuple[float, str]:
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


def _gateway(p: CostParams, res: Result) -> None:
    import numpy as np

    from llmarch_lab.labs.cost import gateway, routing
    from llmarch_lab.llm import engines

    items, pairs, _, _ = measured_outcomes(p)
    router = (routing.make(p.gateway_router, seed=p.seed) if p.gateway_router == "random"
              else routing.make(p.gateway_router)).fit(pairs)
    scores = router.score(pairs)
    threshold = float(np.quantile(scores, 0.5))  # half the traffic large: both engines are exercised
    d = _run_dir(f"gateway-{p.seed}")
    path = d / "router.pkl"
    routing.save(router, path)
    prompts = list(dict.fromkeys(str(x) for x in pairs["prompt"].sample(frac=1.0, random_state=p.seed)))
    prompts = prompts[: p.gateway_requests]
    import contextlib

    with contextlib.ExitStack() as stack:
        es = stack.enter_context(engines.launch("llamacpp", model=p.small_model, log_path=d / "small.log", threads=1))
        el = (_Served(p.base_url, p.large_model, p.api_key_env) if p.base_url else
              stack.enter_context(engines.launch("llamacpp", model=p.large_model, log_path=d / "large.log", threads=1)))
        gw = stack.enter_context(gateway.launch(es.base_url, es.model_name, el.base_url, el.model_name, path, threshold,
                                                log_path=d / "gateway.log"))
        out = gateway.overhead(gw, es.base_url, prompts, max_tokens=p.gateway_max_tokens)
        res.tables["gateway_decisions"] = gw.decisions()
    res.tables["gateway_requests"] = out.pop("requests")
    for k, v in out.items():
        if k.startswith(("ttft_", "router_score_ms")):
            res.add(f"latency.gateway_{k}", v)
    for k in ("router_overhead_ms", "proxy_overhead_ms", "router_overhead_paired_ms", "proxy_overhead_paired_ms"):
        if k in out:
            res.add(f"latency.{k}", out[k])
    res.add("count.gateway_large_share", out["large_share_measured"])
    res.add("count.offline_large_share", out["large_share_offline"])
    res.add("errors.large_share_abs_diff", abs(out["large_share_measured"] - out["large_share_offline"]))
    res.add("errors.gateway_decision_disagreement", 1.0 - out["decision_agreement"])
    res.add("errors.gateway_error_rate", out["n_errors"] / max(1, len(res.tables["gateway_requests"])))
    res.tags["cost.gateway_threshold"] = (f"{threshold:.4g} (median {p.gateway_router} score: half the traffic "
                                          f"to {p.large_model}); router trained on all measured questions")


def _plan(p: CostParams, res: Result) -> None:
    from llmarch_lab.labs.cost import cache, costmodel, outcomes, plan, workload

    items, pairs, small, large = measured_outcomes(p)
    _accuracy_metrics(res, pairs)
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
    res.figures["pareto"] = plan.pareto_plot(table, rec)
    res.figures["waterfall"] = plan.waterfall_plot(plan.waterfall_steps(tr, rec["levers"], prices))
    req = tr.assign(model=p.large_model, prompt_tokens=tr["large_prompt_tokens"], output_tokens=tr["large_output_tokens"])
    chk = costmodel.litellm_check(req[["model", "prompt_tokens", "output_tokens"]].head(200),
                                  {p.large_model: prices[("large", "online")]})
    res.add("errors.max_abs_litellm_cost_diff_pct", 100.0 * float(chk.attrs["max_rel_diff"]))
    res.tables["litellm_check"] = chk
    res.tags["cost.notes"] = "; ".join(table.attrs.get("notes", [])) or "all levers evaluated"
    res.tags["cost.recommended"] = str(rec.get("plan"))


def oof_router_table(p: CostParams, pairs, names, n_boot: int | None = None):
    """(router table, curves, out-of-fold scores frame): every question scored by a router fitted
    on the other folds (stratified by task), then RouteLLM's evaluation over all of them."""
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


def _quantile_thresholds(scores, qs):
    import numpy as np

    return sorted({float(np.quantile(scores, 1.0 - q)) for q in qs})


def _check_alias(spec: str) -> None:
    from llmarch_lab.assets import gguf_parts, models

    if spec not in (models.SMOLLM2, *gguf_parts.PARTED) and not spec.endswith(".gguf"):
        raise LabError(f"model {spec!r}: the cost lab serves models with llama.cpp: use an alias "
                       f"({', '.join([models.SMOLLM2, *gguf_parts.PARTED])}) or a .gguf path (a large model "
                       "on another server: set base_url to its OpenAI-compatible URL)")
