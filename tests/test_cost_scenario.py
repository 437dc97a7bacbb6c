"""Cost v2 (the scenario part): the plan's arithmetic checked by hand on a small frame, the real
GGUF quantizer, the Selective Context compressor, and the measurements and the part end to end on
SmolLM2 served by llama-server."""

import json
import os

import pytest

from llmarch_lab import LabError, paths


def _measured(**kw):
    import pandas as pd

    from llmarch_lab.labs.cost.scenario import plan

    # Four requests: q1 (pubmedqa), q2 (gsm8k), q1 again (a correct cache hit of request 0), q3 (pubmedqa).
    trace = pd.DataFrame({"request_id": [0, 1, 2, 3], "qid": ["q1", "q2", "q1", "q3"],
                          "task": ["pubmedqa", "gsm8k", "pubmedqa", "pubmedqa"],
                          "cache_outcome": ["miss", "miss", "correct_hit", "wrong_hit"],
                          "cache_source_id": [None, None, 0, 1], "router_score": [0.9, 0.1, 0.9, 0.2]})
    answers = {"large-f16": {"q1": 1.0, "q2": 1.0, "q3": 1.0}, "large-f16-c1": {"q1": 1.0, "q2": 1.0, "q3": 1.0},
               "large-q8_0": {"q1": 1.0, "q2": 0.0, "q3": 1.0}, "small-q4km": {"q1": 0.0, "q2": 1.0, "q3": 0.0},
               "large-f16-cc2": {"q1": 0.0, "q3": 1.0}}
    seconds = {"large-f16": {"pubmedqa": 2.0, "gsm8k": 10.0}, "large-f16-c1": {"pubmedqa": 4.0, "gsm8k": 20.0},
               "large-q8_0": {"pubmedqa": 1.0, "gsm8k": 5.0}, "small-q4km": {"pubmedqa": 0.5, "gsm8k": 2.0},
               "large-f16-cc2": {"pubmedqa": 1.0}}
    return plan.Measured(trace, answers, seconds, compress_s={2.0: 0.25}, lookup_s=0.01, **kw)


def test_plan_prices_and_scores_every_lever_as_stated():
    from llmarch_lab.labs.cost.scenario import plan

    m = _measured()
    cost, q, served = plan.evaluate(m, plan.Plan())
    assert list(cost) == [4.0, 20.0, 4.0, 4.0] and list(q) == [1, 1, 1, 1]  # one request at a time
    cost, _, _ = plan.evaluate(m, plan.Plan(online_concurrency=4))
    assert list(cost) == [2.0, 10.0, 2.0, 2.0]
    cost, q, _ = plan.evaluate(m, plan.Plan(precision="Q8_0", online_concurrency=4))
    assert list(cost) == [1.0, 5.0, 1.0, 1.0] and list(q) == [1, 0, 1, 1]  # its own answers
    cost, q, _ = plan.evaluate(m, plan.Plan(compress=2.0, online_concurrency=4))
    assert list(cost) == [1.25, 10.0, 1.25, 1.25] and list(q) == [0, 1, 0, 1]  # + the compressor's time
    cost, q, served = plan.evaluate(m, plan.Plan(route=0.5, online_concurrency=4))
    assert list(served) == ["large", "small", "large", "small"] and list(q) == [1, 1, 1, 0]
    cost, q, served = plan.evaluate(m, plan.Plan(cache=True, precision="Q8_0", online_concurrency=4))
    assert list(served) == ["large", "large", "cache", "cache"]
    assert list(q) == [1, 0, 1, 0]  # the hit serves request 0's answer; the wrong hit scores 0
    assert list(cost) == pytest.approx([1.01, 5.01, 0.01, 0.01])
    # Two answer-changing levers never measured together: the worse answer, the ratios multiply.
    cost, q, _ = plan.evaluate(m, plan.Plan(precision="Q8_0", compress=2.0, online_concurrency=4))
    assert list(q) == [0, 0, 0, 1] and cost[0] == pytest.approx(0.5 + 0.25)
    r = plan.row(m, plan.Plan(precision="Q8_0", compress=2.0, online_concurrency=4))
    assert r["composed"] and r["rel_loss_pct"] == pytest.approx(75.0)
    with pytest.raises(LabError, match="online_concurrency 8"):
        plan.evaluate(m, plan.Plan(online_concurrency=8))


def test_candidates_table_recommendation_and_waterfall():
    from llmarch_lab.labs.cost.scenario import plan

    m = _measured()
    plans = plan.candidates(m, route_thresholds=[0.5])
    assert plan.Plan() in plans and plan.Plan(precision="Q8_0", compress=2.0, route=0.5, cache=True) in plans
    table = plan.table(m, plans, n_resamples=200)
    assert (table["pareto"] & table["loss_ci_high"].isna()).sum() == 0  # the front carries intervals
    rec = plan.recommend(table, target_saving_pct=50, max_rel_loss_pct=0.0)
    # The cache's wrong hit costs quality, Q8_0 gets q2 wrong: the best lossless plan is batching alone.
    assert rec["rel_loss_pct"] <= 0.0 and rec["saving_pct"] == pytest.approx(50.0) and rec["met"]
    steps = plan.waterfall(m, plan.Plan(precision="Q8_0", online_concurrency=4), usd_per_second=1.0)
    assert list(steps["lever"]) == ["baseline", "quantize Q8_0", "batch x4"]
    assert steps["cost_usd"].iloc[0] == 32.0 and steps["saving_pct"].iloc[-1] == pytest.approx(75.0)
    assert steps["step_saving_pct"].sum() == pytest.approx(75.0)


def test_gguf_quant_writes_a_real_q8_file(tmp_path, monkeypatch):
    import gguf

    from llmarch_lab.labs.cost.scenario import gguf_quant

    for sub in ("models",):
        (paths.cache_dir() / sub).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    out = gguf_quant.variant("smollm2-135m-instruct", "Q8_0")
    r = gguf.GGUFReader(out)
    ftype = int(r.fields["general.file_type"].parts[-1][0])
    assert ftype == gguf_quant.FTYPES["Q8_0"]
    assert (tmp_path / "models" / "gguf-quant" / out.name.replace("q8_0", "f16")).is_file()  # made from F16
    assert not list(out.parent.glob("*.tmp*"))
    assert gguf_quant.variant("smollm2-135m-instruct", "Q8_0") == out  # cached
    with pytest.raises(LabError, match="quantization type 'Q5_X'"):
        gguf_quant.variant("smollm2-135m-instruct", "Q5_X")


def test_compressor_keeps_about_one_token_in_ratio_in_order():
    from llmarch_lab.labs.cost.scenario.compress import Compressor

    c = Compressor()
    text = ("Injection drug users represent twelve percent of incident HIV infections each year. Pharmacy "
            "sales of over-the-counter syringes have helped prevent HIV transmission among injection drug users "
            "in many states. We used geographic information systems to study crime rates before and after.")
    n = len(c.tok(text, add_special_tokens=False)["input_ids"])
    for ratio in (2.0, 4.0):
        short = c.compress(text, ratio)
        k = len(c.tok(short, add_special_tokens=False)["input_ids"])
        assert n / ratio * 0.8 <= k <= n / ratio * 1.4, (ratio, n, k)
        words = text.split()
        pos = 0
        for w in short.split():  # every kept word appears in the original, in order
            pos = words.index(w, pos) + 1
    assert c.compress(text, 1.0) == text
    with pytest.raises(LabError, match="ratio 0.5"):
        c.compress(text, 0.5)


@pytest.fixture()
def outcome_cache(tmp_path, monkeypatch):
    real = paths.cache_dir()
    for sub in ("models", "embeddings", "cost-cache"):
        (real / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(real / sub, tmp_path / sub)
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_measurements_resume_and_the_part_plans_and_replays(outcome_cache, store):
    from llmarch_lab.assets import models
    from llmarch_lab.labs.cost import outcomes
    from llmarch_lab.labs.cost.lab import CostParams, run
    from llmarch_lab.labs.cost.scenario import measure

    # SmolLM2 plays both tiers (the small one through its file path) so the test stays small.
    small = str(models.smollm2_gguf())
    study = dict((c.key, c) for c, _ in measure.study("smollm2-135m-instruct", small, 24))
    for key in ("large-f16", "large-f16-c1", "small-q4km"):
        rows = measure.run(study[key], outcome_cache / "logs", pubmedqa_n=3, gsm8k_n=2, progress=False)
        assert len(rows) == 5 and rows["prompt_tokens"].gt(0).all()
    walls = (outcome_cache / "cost-outcomes" / "walls.jsonl").read_text().splitlines()
    assert [json.loads(w)["task"] for w in walls] == ["pubmedqa", "gsm8k"] * 3
    measure.run(study["large-f16"], outcome_cache / "logs", pubmedqa_n=3, gsm8k_n=2, progress=False)
    assert len((outcome_cache / "cost-outcomes" / "walls.jsonl").read_text().splitlines()) == 6  # nothing new
    key = measure.store_key(study["large-f16"])
    assert key == "large-f16@smollm2-135m-instruct" and len(outcomes.cached(key)) == 5
    assert {src for _, src in measure.machine_seconds(key, with_source=True).values()} == {"answers"}
    secs = measure.time_config(study["large-f16"], outcome_cache / "logs", pubmedqa_n=2, gsm8k_n=1)
    assert set(secs) == {"pubmedqa", "gsm8k"} and min(secs.values()) > 0
    timed = [json.loads(x) for x in (outcome_cache / "cost-outcomes" / "timings.jsonl").read_text().splitlines()]
    assert [t["questions"] for t in timed] == [4, 4]  # at least one per slot (concurrency 4)
    assert measure.machine_seconds(key, with_source=True)["gsm8k"] == (secs["gsm8k"], "timing")  # preferred
    assert len(outcomes.cached(key)) == 5  # timing answers are not stored
    kw = dict(part="scenario", large_model="smollm2-135m-instruct", small_model=small, pubmedqa_n=3, gsm8k_n=2,
              max_tokens=24, n_boot=50, trace_requests=10, cv_folds=2, plan_router="rule", replay_requests=4)
    res = run(CostParams(**kw))
    assert res.metrics["count.scenario_configs"] == 3
    assert "large-q8_0: 0 of 5 answers measured" in res.tags["cost.scenario_missing"]
    table = res.tables["plan_table"]
    assert {"baseline", "batch x4", "cache", "batch x4 + cache"} <= set(table["plan"])
    assert table["plan"].str.contains("route").any()
    assert "cost.plan_saving_pct" in res.metrics and set(res.figures) == {"pareto", "waterfall"}
    # The replay: the recommended plan stood up (engines, router in the LiteLLM gateway, cache).
    rep = res.tables["replay"]
    assert len(rep) == 4 and set(rep["served_by"]) <= {"model", "cache"} and rep["seconds"].gt(0).all()
    assert res.metrics["cost.replay_machine_s_per_request"] > 0 and 0 <= res.metrics["quality.replay_quality"] <= 1
    assert "errors.replay_cost_vs_plan_pct" in res.metrics and "quality.plan_predicted_quality" in res.metrics
    with pytest.raises(LabError, match="configuration large-f16 is not measured"):
        run(CostParams(**{**kw, "pubmedqa_n": 4}))


def test_prompt_style_is_chosen_on_dev_questions_only():
    import pandas as pd

    from llmarch_lab.labs.cost.scenario import analysis, measure

    qids = [f"gsm8k-{i}" for i in range(40)]
    dev = [q for q in qids if analysis.is_dev(q)]
    assert 4 <= len(dev) <= 20  # a fixed quarter, by hash
    study = measure.study()
    got = analysis.Loaded({c.key: c for c, _ in study})

    def put(key, correct, secs):
        got.rows[key] = pd.DataFrame({"qid": qids, "task": "gsm8k", "correct": correct, "output_tokens": 10.0})
        got.answers[key] = dict(zip(qids, correct))
        got.seconds[key] = {"gsm8k": secs}

    put("large-f16", [1.0] * 40, 20.0)
    # terse: cheap, wrong on every dev question (and right elsewhere): rejected on dev
    put("large-f16-terse", [0.0 if q in dev else 1.0 for q in qids], 2.0)
    # short: cheaper than full, as good on dev (and wrong on held-out questions: not looked at)
    put("large-f16-short", [1.0 if q in dev else 0.0 for q in qids], 10.0)
    style, rows = analysis.choose_style(got, max_rel_loss_pct=2.0)
    assert style == "short"
    test_row = next(r for r in rows if r["style"] == "short" and r["part"] == "test")
    assert test_row["rel_loss_pct"] == 100.0  # reported, not used for the choice
