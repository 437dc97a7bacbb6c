"""The iteration-level model of llama-server's slots (system/ops/slots.py) and its calibration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llmarch_lab.system import records, sizing
from llmarch_lab.system.ops import slots

COST = slots.StepCost(a=5.0, per_decode=10.0, per_prompt=1.9)  # alone: 15 ms a token, 100 ms a 50-token prompt


def test_one_request_alone_is_a_prefill_step_then_one_step_per_token():
    times, arr = slots.simulate(COST, 4, [100.0], [50], [4])
    # prefill: 5 + 1.9 x 50 = 100 ms; then 3 decode steps of 5 + 10 = 15 ms
    assert times[0] == pytest.approx([200.0, 215.0, 230.0, 245.0]) and arr[0] == 100.0
    lat = slots.client_view(times, arr)
    assert lat["ttft_ms"][0] == pytest.approx(100.0) and lat["tpot_ms"][0] == pytest.approx(15.0)


def test_a_new_prompt_stalls_every_decoding_slot_and_a_full_engine_queues():
    # B arrives while A decodes: A's next step carries B's whole prompt (5 + 10 + 1.9 x 50 = 110 ms).
    times, _ = slots.simulate(COST, 4, [0.0, 110.0], [50, 50], [4, 2])
    a, b = times
    assert a[0] == pytest.approx(100.0) and a[1] == pytest.approx(115.0)
    assert a[2] == pytest.approx(225.0) and b[0] == pytest.approx(225.0)  # the stalled gap and B's first token
    assert a[3] == pytest.approx(250.0) and b[1] == pytest.approx(250.0)  # two decoding: 5 + 2 x 10 ms
    # One slot: B waits for A to finish, then prefills alone.
    times, _ = slots.simulate(COST, 1, [0.0, 110.0], [50, 50], [4, 2])
    assert times[1][0] == pytest.approx(times[0][-1] + 100.0)


def test_the_gateway_holds_back_windows_and_checks_them():
    times = [np.array([100.0, 110.0, 120.0, 130.0, 140.0])]
    lat = slots.client_view(times, [0.0], window_tokens=2, check_ms=7.0)
    # the first window (2 tokens) is released after its check; the end after the final one
    assert lat["ttft_ms"][0] == pytest.approx(117.0) and lat["e2e_ms"][0] == pytest.approx(147.0)
    assert lat["tpot_ms"][0] == pytest.approx(30.0 / 4)
    # a window longer than the answer: nothing before the end
    assert slots.client_view(times, [0.0], 9, 7.0)["ttft_ms"][0] == pytest.approx(147.0)


def _sweep(cost: slots.StepCost, n_slots: int) -> pd.DataFrame:
    """A closed-loop sweep (1, 2, 4 x 16 requests) as the load generator records it, simulated."""
    rows = []
    for k in (1, 2, 4):
        times, arr = slots.simulate(cost, n_slots, [], [150], [32], closed_clients=k, n_closed=16)
        lat = slots.client_view(times, arr)
        rows += [{"level": float(k), "ttft_ms": lat["ttft_ms"][i], "tpot_ms": lat["tpot_ms"][i],
                  "e2e_ms": lat["e2e_ms"][i], "prompt_tokens": 150, "output_tokens": 32,
                  "itl_ms": json.dumps(np.diff(times[i]).round(3).tolist())} for i in range(16)]
    return pd.DataFrame(rows)


def test_calibration_recovers_the_step_cost_of_a_sweep():
    true = slots.StepCost(a=7.0, per_decode=13.0, per_prompt=3.7)
    got = slots.calibrate(_sweep(true, 4), 4)
    # the grid's step is 0.9 x 20 / 18 = 1 ms
    assert got.per_decode == pytest.approx(13.0, abs=1.0) and got.a == pytest.approx(7.0, abs=1.0)
    assert got.per_prompt == pytest.approx(3.7, abs=0.05)
    other = slots.calibrate(_sweep(slots.StepCost(a=17.0, per_decode=3.0, per_prompt=3.7), 4), 4)
    assert other.per_decode == pytest.approx(3.0, abs=1.0)


def test_open_loop_of_llama_server_uses_the_slot_model_and_the_guard_delays_the_first_token():
    true = slots.StepCost(a=7.0, per_decode=13.0, per_prompt=3.7)
    reqs = _sweep(true, 4)
    levels = [{"level": k, "req_per_s": 2.0 * k, "e2e_ms_p50": float(g.e2e_ms.median()), "error_rate": 0.0}
              for k, g in reqs.groupby("level")]
    s = records.Serving("r", "e", "n", "llama-server", "m", "concurrent", {"parallel": 4, "output_tokens": 32},
                        levels, requests=reqs.assign(text="x" * 128))  # 4 characters per token
    bare = sizing.open_loop(s, levels, 0.05)  # nearly alone: the prefill, then 31 steps
    assert bare["ttft_ms_p50"] == pytest.approx(7.0 + 3.7 * 150, rel=0.02)
    assert bare["tpot_ms_p50"] == pytest.approx(20.0, rel=0.02)
    busy = sizing.open_loop(s, levels, 1.5)
    assert busy["tpot_ms_p50"] > 1.3 * bare["tpot_ms_p50"]  # prefills of others stall the decoding
    guarded = sizing.open_loop(s, levels, 0.05, records.Guard("g", added_ms={"p50": 10.0, "p99": 20.0}))
    w = sizing.stream_window_chars() / 4.0  # 16 tokens held back
    assert guarded["holdback_tokens"] == pytest.approx(w)
    assert guarded["ttft_ms_p50"] == pytest.approx(bare["ttft_ms_p50"] + (np.ceil(w) - 1) * 20.0 + 20.0, rel=0.02)


def test_the_check_predicts_its_own_trace_from_the_sweep_at_check_time():
    from llmarch_lab.system import verify

    stored, now = (slots.StepCost(a=7.0, per_decode=13.0, per_prompt=k) for k in (3.7, 7.4))  # the machine slowed
    levels = [{"level": k, "req_per_s": 1.0, "e2e_ms_p50": 1000.0, "error_rate": 0.0} for k in (1, 2, 4)]
    s = records.Serving("r", "e", "n", "llama-server", "m", "concurrent", {"parallel": 4, "output_tokens": 32},
                        levels, requests=_sweep(stored, 4).assign(text="x" * 128))
    eng = pd.DataFrame({"start_ms": [0.0, 10_000.0, 20_000.0], "prompt_tokens": [150] * 3, "output_tokens": [32] * 3})
    alone = verify.predict_on_trace(s, records.Guard("none"), pd.DataFrame(), eng, 3)
    assert alone["ttft_ms_p50"] == pytest.approx(7.0 + 3.7 * 150, rel=0.02)  # no sweep at the check: the stored one
    at_check = verify.predict_on_trace(s, records.Guard("none"), _sweep(now, 4), eng, 3)
    assert at_check["ttft_ms_p50"] == pytest.approx(7.0 + 7.4 * 150, rel=0.02)
    assert at_check["req_per_s"] == pytest.approx(3 / ((20_000.0 + at_check["e2e_ms_p50"]) / 1000.0), rel=0.01)
