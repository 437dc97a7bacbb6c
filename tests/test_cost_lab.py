"""The cost lab end to end on real models: SmolLM2 (small) and Qwen2.5-Coder-0.5B (large), both
served by llama.cpp, a handful of real PubMedQA and GSM8K questions; the plan with LiteLLM's cost
tracking in its own environment; the `cache eval` command."""

import json
import os
import subprocess
import sys

import pytest

from llmarch_lab import LabError, paths
from llmarch_lab.config import validate_params

pytestmark = pytest.mark.slow
LARGE = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def cost_cache(tmp_path_factory):
    """A fresh outcome cache for this module; the model files, MiniLM embeddings and the semantic
    cache's embedding store and verifier (cost-cache) are shared."""
    real = paths.cache_dir()
    d = tmp_path_factory.mktemp("cost-cache")
    for sub in ("models", "embeddings", "cost-cache"):
        (real / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(real / sub, d / sub)
    old = os.environ.get("LLMARCH_CACHE_DIR")
    os.environ["LLMARCH_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("LLMARCH_CACHE_DIR", None)
    else:
        os.environ["LLMARCH_CACHE_DIR"] = old


def _params(**kw):
    from llmarch_lab.labs.cost.lab import CostParams

    base = dict(large_model=LARGE, pubmedqa_n=6, gsm8k_n=4, max_tokens=48, cv_folds=2, n_boot=50, threads=2,
                routers=["random", "rule", "confidence", "cascade"], plan_router="rule", trace_requests=60)
    own = CostParams.parts[kw.get("part", "routing")].model_fields  # another part's field is an error
    return CostParams(**{**{k: v for k, v in base.items() if k in own}, **kw})


def test_routing_part_measures_both_models_and_scores_routers(cost_cache, tmp_path):
    from llmarch_lab.labs.cost import lab, outcomes
    from llmarch_lab.llm import engines

    # The large model on "another server" (base_url): here a llama.cpp engine this test starts.
    with engines.launch("llamacpp", model=LARGE, log_path=tmp_path / "large.log", threads=2) as eng:
        res = lab.run(_params(part="routing", base_url=eng.base_url, api_key_env=""))
    m = res.metrics
    for task in ("pubmedqa", "gsm8k"):
        for side in ("small", "large"):
            assert 0.0 <= m[f"quality.{side}_{task}_accuracy"] <= 1.0
    assert m["count.questions"] == 10
    table = res.tables["router_table"]
    assert list(table["router"]) == ["random", "rule", "confidence", "cascade"]
    assert table["apgr"].between(0, 1).all()
    # cascades pay for every small call: never cheaper than the confidence router at the same share
    t = table.set_index("router")
    assert t.loc["cascade", "cost_95"] >= t.loc["confidence", "cost_95"]
    assert m["throughput.large_prefill_tok_per_s"] > 0 and m["throughput.small_decode_tok_per_s"] > 0
    # every outcome is cached per model and question: token counts from the server's usage
    for model in ("smollm2-135m-instruct", LARGE):
        rows = outcomes.cached(model)
        assert len(rows) == 10 and all(r["prompt_tokens"] > 0 and r["output_tokens"] >= 1 for r in rows.values())
    gsm = [r for r in outcomes.cached(LARGE).values() if r["task"] == "gsm8k"]
    assert all(r["output_tokens"] <= 48 for r in gsm)


def test_plan_part_reuses_outcomes_and_agrees_with_litellm(cost_cache, store):
    from llmarch_lab.labs.cost import lab, outcomes

    before = {m: len(outcomes.cached(m)) for m in ("smollm2-135m-instruct", LARGE)}
    res = lab.run(_params(part="plan"))
    assert {m: len(outcomes.cached(m)) for m in before} == before  # nothing measured twice
    m = res.metrics
    assert "cost.plan_saving_pct" in m and "quality.plan_relative_loss_pct" in m
    assert m["errors.max_abs_litellm_cost_diff_pct"] < 1e-6
    assert m["cost.large_usd_per_1m_output_tokens"] > m["cost.small_usd_per_1m_output_tokens"] > 0
    tr = res.tables["trace"]
    assert len(tr) == int(10 / (1 - 0.3)) and m["count.trace_requests"] == len(tr)  # the repeat rate holds
    assert set(tr["cache_outcome"]) <= {"miss", "correct_hit", "wrong_hit"}
    verbatim = tr[tr["kind"] == "verbatim"]
    assert (verbatim["cache_outcome"] == "correct_hit").all()  # an exact repeat always hits its own entry
    assert set(res.figures) >= {"pareto", "waterfall"}


def test_params_name_the_field():
    from llmarch_lab.labs.cost.lab import CostParams

    with pytest.raises(LabError, match="large_model"):
        validate_params(CostParams, {"large_model": "smollm2-135m-instruct"}, "cost.yaml")
    with pytest.raises(LabError, match="small_model"):
        validate_params(CostParams, {"small_model": "gpt-9"}, "cost.yaml")
    with pytest.raises(LabError, match="pubmedqa_n"):
        validate_params(CostParams, {"part": "plan", "pubmedqa_n": 0, "gsm8k_n": 0}, "cost.yaml")


# CostParams' fields before the parts split (name: annotation, default, bounds): the notebook's
# parameters cell and the MLflow params of earlier runs depend on them.
FIELDS = {
    "seed": ("<class 'int'>", 0, "[]"),
    "base_url": ("<class 'str'>", "", "[]"),
    "api_key_env": ("<class 'str'>", "OPENAI_API_KEY", "[_PydanticGeneralMetadata(pattern='^([A-Za-z_][A-Za-z0-9_]*)?$')]"),
    "part": ("typing.Literal['routing', 'routellm', 'cache', 'gateway', 'plan', 'scenario']", "routing", "[]"),
    "small_model": ("<class 'str'>", "smollm2-135m-instruct", "[MinLen(min_length=1)]"),
    "large_model": ("<class 'str'>", "qwen2.5-coder-1.5b-instruct", "[MinLen(min_length=1)]"),
    "pubmedqa_n": ("<class 'int'>", 150, "[Ge(ge=0), Le(le=1000)]"),
    "gsm8k_n": ("<class 'int'>", 100, "[Ge(ge=0), Le(le=1319)]"),
    "max_tokens": ("<class 'int'>", 256, "[Ge(ge=16), Le(le=2048)]"),
    "threads": ("<class 'int'>", 2, "[Ge(ge=1), Le(le=64)]"),
    "routers": ("list[typing.Literal['random', 'rule', 'minilm-lr', 'knn', 'confidence', 'cascade']]",
                ["random", "rule", "minilm-lr", "knn", "confidence", "cascade"], "[MinLen(min_length=1)]"),
    "cv_folds": ("<class 'int'>", 5, "[Ge(ge=2), Le(le=20)]"),
    "n_boot": ("<class 'int'>", 500, "[Ge(ge=50), Le(le=10000)]"),
    "benches": ("list[typing.Literal['gsm8k', 'mmlu', 'mt_bench']]", ["gsm8k", "mmlu", "mt_bench"], "[MinLen(min_length=1)]"),
    "cache_pairs": ("<class 'int'>", 0, "[Ge(ge=0), Le(le=1000000)]"),
    "trace_requests": ("<class 'int'>", 3000, "[Ge(ge=10), Le(le=1000000)]"),
    "repeat_rate": ("<class 'float'>", 0.3, "[Ge(ge=0.0), Lt(lt=1.0)]"),
    "paraphrase_share": ("<class 'float'>", 0.5, "[Ge(ge=0.0), Le(le=1.0)]"),
    "near_miss_share": ("<class 'float'>", 0.1, "[Ge(ge=0.0), Lt(lt=1.0)]"),
    "zipf_s": ("<class 'float'>", 1.1, "[Gt(gt=0.0), Le(le=5.0)]"),
    "gateway_router": ("typing.Literal['random', 'rule', 'minilm-lr', 'knn']", "minilm-lr", "[]"),
    "gateway_requests": ("<class 'int'>", 20, "[Ge(ge=4), Le(le=1000)]"),
    "gateway_max_tokens": ("<class 'int'>", 16, "[Ge(ge=1), Le(le=512)]"),
    "machine": ("<class 'str'>", "cpu-2vcpu", "[MinLen(min_length=1)]"),
    "target_saving_pct": ("<class 'float'>", 50.0, "[Gt(gt=0.0), Lt(lt=100.0)]"),
    "max_rel_loss_pct": ("<class 'float'>", 2.0, "[Ge(ge=0.0), Le(le=100.0)]"),
    "plan_router": ("typing.Literal['random', 'rule', 'minilm-lr', 'knn', 'confidence']", "minilm-lr", "[]"),
    "route_thresholds": ("list[float]", [0.2, 0.35, 0.5, 0.65, 0.8], "[]"),
    "offline_share": ("<class 'float'>", 0.3, "[Ge(ge=0.0), Le(le=1.0)]"),
    "replay_requests": ("<class 'int'>", 0, "[Ge(ge=0), Le(le=1000000)]"),
    "measure_missing": ("<class 'bool'>", False, "[]"),
}


def test_each_part_takes_only_its_own_fields():
    from llmarch_lab.labs.cost.lab import CostParams
    from llmarch_lab.labs.cost.parts.cache import CacheParams
    from llmarch_lab.labs.cost.parts.routellm import RoutellmParams

    with pytest.raises(LabError, match=r"x\.yaml: routers: not a parameter of part 'cache' \(it belongs to part "
                                       r"'routing', 'routellm'; part 'cache' takes: .*\btrace_requests\b"):
        validate_params(CostParams, {"part": "cache", "routers": ["rule"]}, "x.yaml")
    # a routing-only consistency check does not fire for a part without those fields: the error names the part
    with pytest.raises(LabError, match=r"gsm8k_n: not a parameter of part 'routellm'"):
        validate_params(CostParams, {"part": "routellm", "pubmedqa_n": 0, "gsm8k_n": 0}, "x.yaml")
    own = CostParams(part="routellm", n_boot=100).part_params()
    assert type(own) is RoutellmParams and own.n_boot == 100
    assert not set(type(own).model_fields) & (set(CacheParams.model_fields) - set(RoutellmParams.model_fields))
    assert not hasattr(own, "trace_requests") and not hasattr(own, "cache_pairs")
    # the flat model is unchanged: every field's name, annotation, default and bounds
    got = {k: (repr(f.annotation), f.get_default(call_default_factory=True), repr(f.metadata))
           for k, f in CostParams.model_fields.items()}
    assert got == FIELDS
    assert all(f.description for f in CostParams.model_fields.values())


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "llmarch_lab.cli", *args], capture_output=True, text=True,
                          timeout=1700, **kw)


@pytest.mark.timeout(1800)  # on a cold cache the first `cache eval` embeds the dev subset and trains the verifier
def test_cache_eval_command(tmp_path):
    from llmarch_lab.assets import datasets

    pairs = datasets.qqp_pairs().sample(n=120, random_state=3)
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in pairs.to_dict("records")))
    out = tmp_path / "out.json"
    r = _cli("cache", "eval", "--pairs", str(f), "--out", str(out))
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert 0.0 <= got["hit_rate"] <= 1.0 and 0.0 <= got["wrong_hit_rate"] <= 1.0
    assert got["latency_ms_p95"] >= got["latency_ms_p50"] > 0 and "config" in got
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "a", "text_b": "b", "label": 1}\n{"text_a": "a", "label": 0}\n')
    r = _cli("cache", "eval", "--pairs", str(bad), "--out", str(tmp_path / "never.json"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.jsonl:2" in lines[0] and "text_b" in lines[0], r.stderr
    assert not (tmp_path / "never.json").exists()
