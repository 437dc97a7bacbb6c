"""The serving limit analysis (labs/serving/limits.py): the Pareto front, the SLO filter, the
physical floors, and the parameter counts it reads from a real model folder."""

import pandas as pd
import pytest

from llmarch_lab.assets import models
from llmarch_lab.labs.serving import limits
from llmarch_lab.llm import engines


def _sweep():
    return pd.DataFrame({"engine": ["a", "a", "b", "b", "c"],
                         "output_tok_per_s": [50.0, 110.0, 60.0, 90.0, 110.0],
                         "ttft_p99_ms": [300.0, 900.0, 150.0, 950.0, 1200.0]})


def test_pareto_keeps_only_rows_nothing_beats_on_both_axes():
    front = limits.pareto(_sweep())
    assert list(zip(front.engine, front.output_tok_per_s)) == [("b", 60.0), ("a", 110.0)]
    # a row with as much throughput and a worse tail (c at 110 tok/s) is dominated; so is b at 90


def test_meets_needs_both_the_latency_and_the_throughput():
    df = _sweep()
    assert limits.meets(df, 200, 100).empty
    assert list(limits.meets(df, 1000, 100).engine) == ["a"]


def test_analysis_floors_follow_the_formulas():
    row = {"run": "r", "model": "m", "engine": "e", "params": 100e6, "weights_mb": 100.0, "prompt_tokens": 160,
           "ttft_p50_ms": 400.0, "tpot_p50_ms": 20.0, "best_tok_s": 80.0}
    out = limits.analysis([row], gemm_gflops=100.0, bandwidth_gbs=10.0).iloc[0]
    assert out.prefill_gflop == pytest.approx(32.0)  # 2 x 100M x 160
    assert out.ttft_floor_ms == pytest.approx(320.0) and out.prefill_efficiency == pytest.approx(0.8)
    assert out.decode_roofline_tok_s == pytest.approx(10e9 / (100 * 2**20))
    assert out.decode_efficiency == pytest.approx(50.0 / out.decode_roofline_tok_s)
    assert out.compute_ceiling_tok_s == pytest.approx(500.0)


def test_matmul_rate_is_measured():
    g = limits.matmul_gflops(m=64, k=64, n=64, repeats=3)
    assert 0.01 < g < 1e5


def test_param_counts_of_smollm2():
    c = engines.param_counts(models.smollm2_dir())
    assert 134e6 < c["total"] < 136e6  # SmolLM2-135M, tied embeddings (49152 x 576 = 28.3M)
    assert c["total"] - c["non_embedding"] == 49152 * 576
