"""llama.cpp's own llama-server (make engine-llama-server), for real: SmolLM2 GGUF on 127.0.0.1
with 4 parallel slots. Its /metrics names against the lab's catalogue, batching seen in both its
own counters and the client's timings, exact output lengths, the serving lab end to end, and the
system bundle's metric names against a live scrape."""

import httpx
import labtest
import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.labs.serving.lab import ServingParams, fixed_output_body
from llmarch_lab.llm import engine_metrics, engines, load


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    eng = engines.launch("llama-server", models.SMOLLM2, parallel=4, max_model_len=512,
                         log_path=tmp_path_factory.mktemp("eng") / "llama-server.log")
    yield eng
    eng.stop()
    assert not eng.alive()


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer(models.SMOLLM2)


def _reqs(n_tokens):
    i = 0
    while True:
        yield load.Request(i, [{"role": "user", "content": f"Write a short story about the number {i}."}], n_tokens)
        i += 1


def test_metrics_names_are_the_ones_it_exports(server):
    r = httpx.get(server.metrics_url, timeout=10)
    assert r.status_code == 200
    exported = set(engine_metrics.parse(r.text))
    missing = engine_metrics.wanted("llama-server") - exported
    assert not missing, f"engine_metrics.NAMES['llama-server'] not exported by this llama-server: {missing}"
    assert "llamacpp:kv_cache_usage_ratio" not in exported  # the name older builds had (and the bundle once used)


def test_parallel_slots_decode_together(server, tok):
    body = fixed_output_body(ServingParams(engine="llama-server", output_tokens=32), tok)
    target = load.Target(server.base_url, server.model_name, extra_body=body, timeout_s=120)
    with engine_metrics.Scraper(server.metrics_url, "llama-server", interval_s=0.1) as sc:
        recs, wall = load.run_level(target, _reqs(32), "concurrent", 4, max_requests=8, max_seconds=120)
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert all(r.output_tokens == 32 for r in recs), [r.output_tokens for r in recs]  # ignore_eos: exact length
    m = engine_metrics.summarize(sc.frame(), "llama-server", len(recs))
    assert sc.errors == 0 and sc.scrapes >= 3
    assert m["count.engine_generated_tokens"] >= 8 * 31  # the engine counted what the client got
    assert m["count.engine_running_max"] > 1  # several slots busy at once ...
    assert m["count.engine_tokens_per_decode"] > 1.5  # ... and decoded in the same llama_decode() calls
    # Batching seen from the client: 4 streams overlap in time, so the level takes well under 4x
    # the time of its requests one after the other.
    assert wall < 0.6 * sum(r.e2e_ms for r in recs) / 1000


def test_serving_lab_sweeps_llama_server_with_engine_metrics(store):
    from llmarch_lab.labs.serving.lab import run

    p = ServingParams(engine="llama-server", parallel=2, levels=[1, 2], max_requests=6, input_tokens=96,
                      output_tokens=48, max_model_len=256, warmup_requests=1, scrape_interval_s=0.2)
    before = labtest.engine_pids()
    res = run(p, progress=False)
    assert labtest.engine_pids() <= before  # its engine is stopped when run() returns
    assert "--parallel 2" in res.tags["serving.engine_command"]
    em = res.tables["engine_metrics"]
    assert set(em.level) == {1, 2} and set(em.metric) <= engine_metrics.wanted("llama-server")
    sweep = res.tables["sweep"].set_index("level")
    assert sweep.loc[2, "engine_running_max"] == 2 and sweep.loc[1, "engine_running_max"] == 1
    # No prompt is sent twice in a run, so only the chat template's shared head is a prompt-cache
    # hit (a workload that cycled its prompts gave ~0.99 from the second level on).
    assert (sweep.engine_prefix_cache_hit_rate < 0.4).all(), sweep.engine_prefix_cache_hit_rate
    assert "engine_metrics" in res.figures
    assert res.metrics["count.engine_generated_tokens"] >= 6 * 47


def test_ngram_speculation_keeps_greedy_output_and_counts_acceptance(tmp_path):
    """Speculative decoding (n-gram drafts, no draft model) is verified by the model: on these
    prompts the greedy answers are token for token those without it (not guaranteed in general:
    a batched verification step can flip a near-tie; docs/results/serving.md shows 1 of 8 Qwen
    answers differing). Both servers start fresh and get the same requests with the prompt cache
    off, so what a slot held before (which changes how a prompt is split into batches) plays no
    part. The engine's counters say how many drafted tokens it accepted."""
    from benchmarks.serving_speculative import PROMPTS

    def answers(extra_args, name):
        with engines.launch("llama-server", models.SMOLLM2, parallel=4, max_model_len=512, extra_args=extra_args,
                            log_path=tmp_path / f"{name}.log") as eng:
            target = load.Target(eng.base_url, eng.model_name, extra_body={"cache_prompt": False}, timeout_s=120)
            reqs = (load.Request(i, [{"role": "user", "content": p}], 40) for i, p in enumerate(PROMPTS[:3]))
            with engine_metrics.Scraper(eng.metrics_url, "llama-server", 0.5) as sc:
                recs, _ = load.run_level(target, reqs, "concurrent", 1, 3, 300)
        assert all(r.ok for r in recs), [r.error for r in recs]
        return [r.text for r in recs], engine_metrics.summarize(sc.frame(), "llama-server", 3)

    base, _ = answers([], "base")
    got, m = answers(["--spec-type", "ngram-simple", "--spec-draft-n-max", "8"], "spec")
    assert got == base  # token for token
    assert 0 < m["count.engine_spec_acceptance_rate"] <= 1  # it drafted, and the model accepted some


def test_parallel_is_only_for_llama_server():
    with pytest.raises(ValueError, match="parallel: only llama-server"):
        ServingParams(engine="llamacpp", parallel=4)
    with pytest.raises(LabError, match="parallel"):
        engines.engine_command("llamacpp", models.SMOLLM2, 1, "x", "float32", 512, 2, [], parallel=4)
    with pytest.raises(ValueError, match="draft_model: only llama-server"):
        ServingParams(engine="vllm", draft_model="qwen2.5-coder-0.5b-instruct")


def test_bundle_metric_names_match_a_live_scrape(server, tmp_path):
    from llmarch_lab.system import bundle

    cfg = bundle.BundleConfig(system="demo", engine="llama-server", model="smollm2-135m-instruct",
                              model_file="m.gguf", replicas=1, max_replicas=2, slots=4, threads=2, ctx=512,
                              cpu="2", memory="4Gi", gpus=0, guard="none", pii_config="no_op/tuned",
                              slos={"ttft_ms_p99": 1000.0, "error_rate": 0.01})
    bundle.write(cfg, tmp_path / "b")
    res = bundle.metric_names_check(tmp_path / "b", {"engine": httpx.get(server.metrics_url, timeout=10).text})
    engine_rows = {k: v for k, v in res.items() if k.startswith("metric llamacpp:")}
    assert len(engine_rows) >= 4 and all(ok for ok, _ in engine_rows.values()), engine_rows
    assert "KVCacheNearlyFull" not in (tmp_path / "b" / "prometheus" / "alerts.yml").read_text()
