"""Cost model and plan: exact arithmetic, LiteLLM agreement (real subprocess), price-file errors,
and the lever table on a small trace written out by hand."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from llmarch_lab import LabError, config
from llmarch_lab.labs.cost import costmodel, levers, plan, plan_plots

# ------------------------------------------------------------------------------ arithmetic


def test_token_costs_known_values():
    p = costmodel.token_costs(3600, 3600, 1.0)
    # 1 $/h over 3600 tok/s * 3600 s = 12.96M tokens per hour -> 1e6 / 12.96e6 $ per 1M
    assert p["usd_per_1m_input"] == pytest.approx(1 / 12.96, rel=1e-12)
    assert p["usd_per_1m_output"] == pytest.approx(0.0771604938, rel=1e-9)
    q = costmodel.token_costs(1000, 10, 0.36, utilization=0.5)  # idle half the hour: twice the price
    assert q["usd_per_1m_input"] == pytest.approx(0.72 / 3.6e6 * 1e6)
    assert q["usd_per_1m_output"] == pytest.approx(0.72 / 3.6e4 * 1e6)
    with pytest.raises(LabError, match="throughput_out_tok_s"):
        costmodel.token_costs(10, 0, 1.0)


def test_request_cost_is_time_share_and_vectorised():
    prices = costmodel.token_costs(500.0, 20.0, 0.0816)
    prompt, out = np.array([100, 0, 2500]), np.array([10, 40, 0])
    got = costmodel.request_cost(prompt, out, prices)
    # time share: usd_per_second * (prompt / prefill + output / decode)
    want = 0.0816 / 3600 * (prompt / 500.0 + out / 20.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert costmodel.request_cost(100, 10, prices) == pytest.approx(want[0])


def test_throughput_measured_rows_without_a_store(store):
    tp = costmodel.throughput_from_runs(models=["s", "l"], measured=[
        {"model": "s", "engine": "llamacpp", "concurrency": 1, "prefill_tok_s": 800.0, "decode_tok_s": 40.0},
        {"model": "s", "engine": "llamacpp", "concurrency": 4, "prefill_tok_s": 900.0, "decode_tok_s": 90.0},
        {"model": "l", "engine": "llamacpp", "concurrency": 1, "prefill_tok_s": 150.0, "decode_tok_s": 8.0}])
    assert list(tp.columns) == costmodel.THROUGHPUT_COLUMNS
    assert set(tp.source) == {"measured in this run"}
    p = costmodel.price_at(tp, "s", 0.0816)  # None = highest concurrency measured
    assert p["concurrency"] == 4 and p["usd_per_1m_output"] == pytest.approx(0.0816 / (90 * 3600) * 1e6)


# ------------------------------------------------------------------------------ LiteLLM


def test_litellm_agrees_with_the_lab_on_20_requests():
    prices = {"small": costmodel.token_costs(812.5, 41.3, 0.0816),
              "large": costmodel.token_costs(143.9, 7.7, 0.0816),
              "h100": costmodel.token_costs(25_000.0, 2_400.0, 12.29)}
    prompt = [12, 480, 1023, 7, 256, 3000, 64, 99, 150, 2048, 333, 1, 815, 40, 77, 512, 640, 5, 1200, 0]
    output = [1, 320, 64, 0, 1, 12, 300, 150, 1, 7, 88, 1, 256, 33, 2, 128, 1, 9, 45, 3]
    req = pd.DataFrame({"request_id": range(20), "model": (["small", "large", "h100", "large"] * 5),
                        "prompt_tokens": prompt, "output_tokens": output})
    out = costmodel.litellm_check(req, prices)
    assert len(out) == 20 and {"lab_usd", "litellm_usd", "abs_diff", "rel_diff"} <= set(out.columns)
    assert out.attrs["max_rel_diff"] <= 1e-9, out[["model", "lab_usd", "litellm_usd", "rel_diff"]]
    assert out.attrs["litellm_version"].startswith("1.")
    assert (out.litellm_usd[out.prompt_tokens + out.output_tokens > 0] > 0).all()


def test_litellm_missing_env_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMARCH_LITELLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(LabError, match="make engine-litellm"):
        costmodel.litellm_python()


# ------------------------------------------------------------------------------ price table


def test_shipped_price_table_loads_and_is_not_a_suite():
    table = costmodel.load_prices()
    assert table["cpu-2vcpu"].kind == "cpu" and any(m.kind == "gpu" for m in table.values())
    assert all(m.source and m.date for m in table.values())
    assert costmodel.prices_path() not in config.suite_files()


GOOD = """machines:
  - name: cpu-2vcpu
    usd_per_hour: 0.0816
    kind: cpu
    source: https://example.org/prices
    date: 2026-06-17
    note: ok
"""


@pytest.mark.parametrize("edit, line, field", [
    (lambda t: t.replace("    source: https://example.org/prices\n", ""), 2, "source"),     # missing field
    (lambda t: t.replace("0.0816", "-0.5"), 3, "usd_per_hour"),                              # negative price
    (lambda t: t.replace("2026-06-17", "June 2026"), 6, "date"),                              # not a date
    (lambda t: t.replace("2026-06-17", "2026-13-45"), 6, ""),                                 # no such day
    (lambda t: t.replace("kind: cpu", "kind: tpu"), 4, "kind"),
    (lambda t: t.replace("note: ok", "note: ok\n    region: us"), 8, "region"),              # unknown key
])
def test_bad_price_file_names_file_line_and_field(write, edit, line, field):
    path = write("prices.yaml", edit(GOOD))
    with pytest.raises(LabError) as e:
        costmodel.load_prices(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}:{line}"), msg
    assert field in msg


# ------------------------------------------------------------------------------ the plan

# Six requests over three questions (intent_id), token counts and correctness as measured outcomes
# would give them: the large model is right on five, the small on three.
TRACE = pd.DataFrame({
    "request_id": ["r0", "r1", "r2", "r3", "r4", "r5"],
    "intent_id": ["q1", "q2", "q1", "q3", "q2", "q1"],
    "task": ["pubmedqa", "gsm8k", "pubmedqa", "gsm8k", "gsm8k", "pubmedqa"],
    "small_prompt_tokens": [400, 120, 410, 90, 118, 405],
    "small_output_tokens": [1, 150, 1, 200, 160, 1],
    "large_prompt_tokens": [380, 115, 390, 88, 112, 385],
    "large_output_tokens": [1, 130, 1, 180, 140, 1],
    "small_correct": [1, 0, 1, 0, 1, 0],
    "large_correct": [1, 1, 1, 0, 1, 1],
    "router_score": [0.1, 0.9, 0.2, 0.8, 0.7, 0.3],
    "all_hits": ["miss", "miss", "correct_hit", "miss", "correct_hit", "correct_hit"],
    "one_wrong": ["miss", "miss", "correct_hit", "wrong_hit", "miss", "miss"],
})
SMALL_ON = {"usd_per_1m_input": 0.02, "usd_per_1m_output": 0.60}
SMALL_BA = {"usd_per_1m_input": 0.01, "usd_per_1m_output": 0.20}
LARGE_ON = {"usd_per_1m_input": 0.15, "usd_per_1m_output": 3.00}
LARGE_BA = {"usd_per_1m_input": 0.10, "usd_per_1m_output": 1.00}
PRICES = {("small", "online"): SMALL_ON, ("small", "batch"): SMALL_BA,
          ("large", "online"): LARGE_ON, ("large", "batch"): LARGE_BA}


def cost(side, prices, rows=slice(None)):
    t = TRACE.iloc[rows]
    return float((t[f"{side}_prompt_tokens"] * prices["usd_per_1m_input"] / 1e6
                  + t[f"{side}_output_tokens"] * prices["usd_per_1m_output"] / 1e6).sum())


def test_baseline_and_route_everything_small():
    base = plan.evaluate_plan(TRACE, levers.BASELINE, PRICES)
    assert base["cost_usd"] == pytest.approx(cost("large", LARGE_ON))
    assert base["quality"] == pytest.approx(5 / 6)
    small = plan.evaluate_plan(TRACE, levers.route(math.inf), PRICES)
    saving = 1 - small["cost_usd"] / base["cost_usd"]
    assert saving == pytest.approx(1 - cost("small", SMALL_ON) / cost("large", LARGE_ON))
    assert small["quality"] == pytest.approx(3 / 6)
    # threshold 0.5: r1, r3, r4 (scores above it) go large
    mid = plan.evaluate_plan(TRACE, levers.route(0.5), PRICES)
    assert mid["cost_usd"] == pytest.approx(cost("large", LARGE_ON, [1, 3, 4]) + cost("small", SMALL_ON, [0, 2, 5]))
    assert list(mid["served_by"]) == ["small", "large", "small", "large", "large", "small"]


def test_cache_correct_hits_save_their_cost_and_keep_the_earlier_quality():
    base = plan.evaluate_plan(TRACE, levers.BASELINE, PRICES)
    hit = plan.evaluate_plan(TRACE, levers.cache(True, "all_hits"), PRICES)
    want = cost("large", LARGE_ON, [2, 4, 5]) / cost("large", LARGE_ON)
    assert 1 - hit["cost_usd"] / base["cost_usd"] == pytest.approx(want)
    np.testing.assert_array_equal(hit["request_quality"], TRACE.large_correct.to_numpy(float))
    # with routing, a hit serves the answer the plan gave its source: r5's source r0 went small (right)
    both = plan.evaluate_plan(TRACE, levers.combine(levers.route(0.5), levers.cache(True, "all_hits")), PRICES)
    assert list(both["request_quality"]) == [1, 1, 1, 0, 1, 1]
    # a wrong hit: no cost, quality 0 (the pessimistic rule)
    wrong = plan.evaluate_plan(TRACE, levers.cache(True, "one_wrong"), PRICES)
    assert wrong["request_cost"][3] == 0 and wrong["request_quality"][3] == 0
    with pytest.raises(LabError, match="unknown cache outcome"):
        plan.evaluate_plan(TRACE.assign(all_hits="maybe"), levers.cache(True, "all_hits"), PRICES)


def test_quantize_and_batch_levers():
    v = levers.QuantVariant("q4_k_m", speed_ratio=2.0, prefill_speed_ratio=1.5, accuracy_ratio=0.9)
    q = plan.evaluate_plan(TRACE, levers.quantize(v), PRICES)
    want = cost("large", {"usd_per_1m_input": 0.15 / 1.5, "usd_per_1m_output": 3.0 / 2.0})
    assert q["cost_usd"] == pytest.approx(want)
    assert q["quality"] == pytest.approx(5 * 0.9 / 6)
    b = plan.evaluate_plan(TRACE, levers.batch(), PRICES)
    assert b["cost_usd"] == pytest.approx(cost("large", LARGE_BA))
    with pytest.raises(LabError, match="perplexity delta alone"):
        levers.QuantVariant("q2", speed_ratio=3.0, ppl_delta_pct=12.0)


def test_lever_table_recommend_and_metrics():
    v = levers.QuantVariant("q8_0", speed_ratio=1.6, accuracy_ratio=1.0)
    table = plan.lever_table(TRACE, PRICES, route_thresholds=[0.5], cache_columns=["all_hits"], quant_variants=[v],
                             n_resamples=500)
    assert len(table) == 16 and table.n_levers.max() == 4
    base = table[table.n_levers == 0].iloc[0]
    assert base.saving_pct == 0 and base.rel_loss_pct == 0
    batch_only = table[table.plan == "batch"].iloc[0]
    assert batch_only.saving_pct == pytest.approx((1 - cost("large", LARGE_BA) / cost("large", LARGE_ON)) * 100)
    assert batch_only.rel_loss_pct == 0 and batch_only.rel_loss_ci_high == 0
    r = table[table.plan == "route@0.5"].iloc[0]  # r5 goes small and is wrong there: 1 of 5 right answers lost
    assert r.rel_loss_pct == pytest.approx(20.0)
    assert r.rel_loss_ci_low <= r.rel_loss_pct <= r.rel_loss_ci_high

    rec = plan.recommend(table, target_saving_pct=50, max_rel_loss_pct=2)
    assert rec["met"] and rec["saving_pct"] >= 50 and rec["rel_loss_pct"] <= 2
    ok = table[(table.rel_loss_pct <= 2)]
    assert rec["saving_pct"] == pytest.approx(ok.saving_pct.max())
    none = plan.recommend(table, target_saving_pct=99.9, max_rel_loss_pct=2)
    assert not none["met"] and "no plan saves" in none["reason"] and none["plan"] == rec["plan"]

    m = plan.plan_metrics(table, rec)
    assert m["cost.plan_saving_pct"] == rec["saving_pct"]
    assert m["quality.plan_relative_loss_pct"] == rec["rel_loss_pct"]
    assert {"cost.saving_pct_route_0_5", "cost.saving_pct_cache_all_hits", "cost.saving_pct_quantize_q8_0",
            "cost.saving_pct_batch", "quality.relative_loss_pct_batch"} <= set(m)
    assert all(re.fullmatch(r"(cost|quality)\.[a-z0-9_]+", k) for k in m)

    steps = plan.waterfall_steps(TRACE, rec["levers"], PRICES)
    assert steps.saving_pct.iloc[-1] == pytest.approx(rec["saving_pct"])
    assert steps.step_saving_pct.sum() == pytest.approx(rec["saving_pct"])
    import matplotlib.figure

    assert isinstance(plan_plots.pareto_plot(table, rec), matplotlib.figure.Figure)
    assert isinstance(plan_plots.waterfall_plot(steps), matplotlib.figure.Figure)

    skipped = plan.lever_table(TRACE, PRICES, route_thresholds=[0.5], n_resamples=200)
    assert len(skipped) == 4 and any("quantize lever skipped" in n for n in skipped.attrs["notes"])
