"""Quantization lab: real SmolLM2 / MiniLM, real WikiText-2 and Cranfield, real MLflow store.

Speed numbers are not asserted (they come from benchmarks/quantization.py); these tests check the
properties that must hold on any machine: footprints ordered by bits, sane perplexities, the
perplexity method against a plain computation, deltas taken from the same suite's fp32 run,
skipped modes recorded with their reason, unknown modes rejected with the valid ones.
"""

import math

import pytest

from llmarch_lab import LabError, config
from llmarch_lab.assets import datasets, models
from llmarch_lab.common.memory import weights_mb
from llmarch_lab.labs.quantization import report as quant_report
from llmarch_lab.labs.quantization.lab import LLM_QUANTS, QuantParams, run
from llmarch_lab.llm import perplexity
from llmarch_lab.run import runner
from llmarch_lab.store import tracking

TINY = dict(threads=1, max_tokens=256, max_length=128, stride=64, prefill_tokens=32, decode_new_tokens=2,
            decode_batch_sizes=[1], repeats=1, reference_fallback=False)


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(LabError) as e:
        config.validate_params(QuantParams, {"quant": "int3"}, "cell")
    msg = str(e.value)
    assert "quant" in msg and all(q in msg for q in LLM_QUANTS)
    with pytest.raises(LabError, match="not available for target=embedder"):
        config.validate_params(QuantParams, {"target": "embedder", "quant": "nf4"}, "cell")
    with pytest.raises(LabError, match="stride"):
        config.validate_params(QuantParams, {"max_length": 64, "stride": 128}, "cell")


def test_fp16_on_cpu_is_skipped_with_reason():
    res = run(QuantParams(quant="fp16", device="cpu"))
    assert res.tags["skipped"] == "true" and "GPU" in res.tags["skip_reason"]
    assert res.metrics == {}  # no numbers for a mode that did not run


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two spin-waiting threads run far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_perplexity_agrees_with_plain_computation(one_thread):
    import torch

    model, tok = models.load_causal_lm(models.SMOLLM2)
    assert weights_mb(model) * 2**20 == model.get_memory_footprint()  # plain tensors: same count
    ids = perplexity.tokenize(tok, datasets.wikitext2_test(), 384)
    assert ids.shape == (1, 384)

    def plain(chunk):  # the model's own mean loss over a chunk, and how many tokens it scored
        with torch.inference_mode():
            return model(chunk, labels=chunk).loss.item(), chunk.shape[1] - 1

    # One window: the strided method reduces to a single forward pass.
    loss, _ = plain(ids[:, :300])
    ours = perplexity.strided_perplexity(model, ids[:, :300], max_length=512, stride=256, progress=False)
    assert ours.scored_tokens == 299
    assert ours.perplexity == pytest.approx(math.exp(loss), rel=0.005)
    # Disjoint chunks (stride == max_length): the token-weighted mean of per-chunk losses.
    parts = [plain(ids[:, i:i + 128]) for i in range(0, 384, 128)]
    plain_ppl = math.exp(sum(l * n for l, n in parts) / sum(n for _, n in parts))
    disjoint = perplexity.strided_perplexity(model, ids, max_length=128, stride=128, progress=False)
    assert disjoint.scored_tokens == 381 and disjoint.perplexity == pytest.approx(plain_ppl, rel=0.005)
    # Overlapping windows score every token once, with more context than disjoint chunks and
    # less than the full sequence, so perplexity lands between the two.
    full = math.exp(plain(ids)[0])
    strided = perplexity.strided_perplexity(model, ids, max_length=128, stride=64, progress=False)
    assert strided.scored_tokens == 383 and len(strided.windows) == 5
    assert full < strided.perplexity < disjoint.perplexity


@pytest.mark.slow
def test_suite_fp32_int8_nf4_through_runner(store, write):
    suite_file = write("quant.yaml", f"""
suite: quant-test
runs:
  - name: llm
    notebook: 10_quantization
    params: {TINY}
    grid:
      quant: [fp32, int8, nf4, fp16]
""")
    outcomes = runner.run_suite(config.load_suite(suite_file), workers=1, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"] * 4, [o.error for o in outcomes]
    runs = {r["params"]["quant"]: r for r in tracking.search("quant-test", tags={"lab": "quantization"})}
    fp32, int8, nf4, fp16 = (runs[q] for q in ("fp32", "int8", "nf4", "fp16"))
    w = {q: runs[q]["metrics"]["memory.weights_mb"] for q in ("fp32", "int8", "nf4")}
    assert w["nf4"] < w["int8"] < w["fp32"], w
    for r in (fp32, int8, nf4):
        ppl = r["metrics"]["quality.perplexity"]
        assert 2 < ppl < 500, (r["params"]["quant"], ppl)  # finite and sane for a real LM on real text
        assert r["metrics"]["throughput.decode_tok_per_s_b1"] > 0 and r["metrics"]["memory.peak_rss_mb"] > w["nf4"]
    base = fp32["metrics"]["quality.perplexity"]
    assert fp32["metrics"]["quality.ppl_delta_pct"] == 0
    for r in (int8, nf4):  # reference_fallback=False: the delta can only come from the suite's fp32 run
        assert fp32["run_id"] in r["tags"]["reference"]
        expected = 100 * (r["metrics"]["quality.perplexity"] / base - 1)
        assert r["metrics"]["quality.ppl_delta_pct"] == pytest.approx(expected, rel=1e-6)
    assert fp16["tags"]["skipped"] == "true" and "GPU" in fp16["tags"]["skip_reason"]
    assert not [k for k in fp16["metrics"] if not k.startswith("latency.run_wall")]

    table = quant_report.compare("quant-test")
    assert list(table.quant) == ["fp32", "fp16", "int8", "nf4"]
    assert table.set_index("quant").loc["fp16", "skipped"].startswith("fp16 is a GPU mode")
    assert table.pareto.any() and not table.set_index("quant").loc["fp16", "pareto"]
    assert set(quant_report.plots(table)) == {"ppl_vs_decode", "memory_per_mode"}
    # the lab's report: the same table plus paired-bootstrap intervals of the deltas (3 windows each)
    rep = quant_report.report("quant-test").table.set_index("quant")
    for q in ("int8", "nf4"):
        lo, hi = rep.loc[q, "delta_ci95_low"], rep.loc[q, "delta_ci95_high"]
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, (q, lo, hi)
    assert math.isnan(rep.loc["fp32", "delta_ci95_low"])  # the reference itself has no interval


@pytest.mark.slow
def test_embedder_int8_vs_fp32_on_cranfield(store):
    p = QuantParams(target="embedder", quant="int8", threads=1, max_docs=24, max_queries=6,
                    batch_size=8, reference_fallback=True)
    res = run(p)
    m = res.metrics
    assert 0.05 < m["quality.ndcg_at_10"] <= 1 and m["throughput.docs_per_s"] > 0
    assert res.tags["reference"].startswith("computed in-process")  # empty store: no fp32 run to reuse
    assert abs(m["quality.ndcg_delta_pct"]) < 20  # int8 MiniLM stays close to fp32 retrieval
    assert m["memory.weights_mb"] < weights_mb(models.load_embedder(models.MINILM))
    assert len(res.tables["per_query"]) == int(res.tags["queries"])


def test_prompt_lookup_keeps_greedy_tokens_and_counts_acceptance():
    """transformers' prompt-lookup decoding (benchmarks/assisted_generation.py) on SmolLM2, for
    real: the greedy tokens are the plain greedy ones, and the acceptance read off the target's
    forward calls adds up (accepted <= drafted, every round yields at least one token)."""
    from benchmarks.assisted_generation import run, table
    from benchmarks.serving_speculative import PROMPTS

    res = run(models.SMOLLM2, "", ["base", "lookup"], lookup_n=6, max_tokens=48, threads=2, prompts=PROMPTS[:2])
    for base, look in zip(res["base"], res["lookup"]):
        assert look["ids"] == base["ids"] and len(base["ids"]) > 0
        assert base["rounds"] == len(base["ids"]) and base["drafted"] == 0  # plain decoding: a call a token
        assert look["rounds"] <= len(look["ids"]) and 0 <= look["accepted"] <= look["drafted"]
    df = table(res, ["base", "lookup"]).set_index("mode")
    assert df.loc["lookup", "identical greedy tokens"] == "2/2"
    # The code prompts quote the code the answer repeats: the lookup drafts something and some of it is kept.
    assert df.loc["lookup", "acceptance"] > 0 and df.loc["lookup", "tokens per target call"] > 1
