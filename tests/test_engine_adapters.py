"""OpenVINO GenAI and CTranslate2 behind the lab's OpenAI adapter (llm/adapters), for real:
SmolLM2 on 127.0.0.1 (make engine-openvino engine-ctranslate2). Batching seen in the engine's
own gauges and in the client's timings, exact output lengths, stream and whole answers alike,
the catalogue's /metrics names, one-line errors for bad requests, a client that goes away
freeing its sequence, and the serving lab end to end."""

import time

import httpx
import labtest
import pytest

from llmarch_lab.assets import models
from llmarch_lab.labs.serving.lab import ServingParams
from llmarch_lab.llm import engine_metrics, engines, load

ADAPTED = ("openvino", "ctranslate2")


@pytest.fixture(scope="module", params=ADAPTED)
def server(request, tmp_path_factory):
    eng = engines.launch(request.param, models.SMOLLM2, parallel=4, max_model_len=512,
                         log_path=tmp_path_factory.mktemp("eng") / f"{request.param}.log")
    yield eng
    eng.stop()
    assert not eng.alive()


def _reqs(n_tokens):
    i = 0
    while True:
        yield load.Request(i, [{"role": "user", "content": f"Write a short story about the number {i}."}], n_tokens)
        i += 1


def _gauge(eng, name):
    return engine_metrics.parse(httpx.get(eng.metrics_url, timeout=10).text)[f"{eng.engine}:{name}"]


def test_metrics_names_are_the_ones_it_exports(server):
    exported = set(engine_metrics.parse(httpx.get(server.metrics_url, timeout=10).text))
    missing = engine_metrics.wanted(server.engine) - exported
    assert not missing, f"engine_metrics.NAMES[{server.engine!r}] not exported by the adapter: {missing}"


def test_streams_are_batched_with_exact_lengths(server):
    target = load.Target(server.base_url, server.model_name, extra_body={"ignore_eos": True}, timeout_s=120)
    with engine_metrics.Scraper(server.metrics_url, server.engine, interval_s=0.1) as sc:
        recs, wall = load.run_level(target, _reqs(24), "concurrent", 4, max_requests=8, max_seconds=120)
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert all(r.output_tokens == 24 and r.usage_reported for r in recs), [r.output_tokens for r in recs]
    m = engine_metrics.summarize(sc.frame(), server.engine, len(recs))
    assert sc.errors == 0 and m["count.engine_running_max"] > 1  # several sequences in one batch
    assert m["count.engine_generated_tokens"] == 8 * 24
    # The engine times from the request's arrival, the client from its send, so every engine TTFT
    # is below its client's (give or take a loaded machine's loop delay). The scraper's window may
    # miss the first requests, so the engine's mean is of a subset: bound it by the client's max.
    # (Static batches make TTFTs differ by a whole batch, so the client's min bounds nothing.)
    assert 0 < m["latency.engine_ttft_ms_mean"] <= max(r.ttft_ms for r in recs) + 100
    assert wall < 0.7 * sum(r.e2e_ms for r in recs) / 1000  # the 4 streams overlapped


def test_greedy_stream_and_whole_answer_agree(server):
    msgs = [{"role": "user", "content": "Name three colours."}]
    whole = server.endpoint(timeout_s=60).chat(msgs, 20, temperature=0.0)
    target = load.Target(server.base_url, server.model_name, timeout_s=60)
    recs, _ = load.run_level(target, iter([load.Request(0, msgs, 20)]), "synchronous", 1, 1, 60)
    assert recs[0].ok and recs[0].text == whole.text and whole.text.strip()


@pytest.mark.parametrize("body,status,words", [
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, 400, "max_tokens"),
    ({"messages": "hi"}, 400, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "gpt-9"),
    ({"messages": [{"role": "user", "content": "word " * 600}], "max_tokens": 8}, 400, "maximum context length"),
])
def test_bad_requests_get_one_clear_error(server, body, status, words):
    r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert httpx.post(server.base_url + "/chat/completions", content=b"{not json", timeout=30).status_code == 400


def test_a_client_that_goes_away_frees_its_sequence(server):
    body = {"model": server.model_name, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 400, "ignore_eos": True, "stream": True}
    before = _gauge(server, "generation_tokens_total")
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as r:
        next(r.iter_lines())  # the first chunk came: it is generating
    deadline = time.time() + 20
    while _gauge(server, "num_requests_running") > 0 and time.time() < deadline:
        time.sleep(0.2)
    assert _gauge(server, "num_requests_running") == 0
    time.sleep(0.5)
    assert _gauge(server, "generation_tokens_total") - before < 400  # stopped long before its 400 tokens
    assert server.alive()


@pytest.mark.parametrize("engine", ADAPTED)
def test_serving_lab_sweeps_an_adapted_engine(store, engine):
    from llmarch_lab.labs.serving.lab import run

    p = ServingParams(engine=engine, parallel=2, levels=[1, 2], max_requests=4, input_tokens=64,
                      output_tokens=16, max_model_len=256, warmup_requests=1, scrape_interval_s=0.2,
                      measure_bandwidth=False)
    before = labtest.engine_pids()
    res = run(p, progress=False)
    assert labtest.engine_pids() <= before  # its engine is stopped when run() returns
    assert "--max-num-seqs 2" in res.tags["serving.engine_command"]
    sweep = res.tables["sweep"].set_index("level")
    # (CTranslate2's static batches can fall out of step at 2 streams, one request each: no "== 2")
    assert (sweep.errors == 0).all() and sweep.loc[2, "engine_running_max"] >= 1
    assert res.metrics["count.engine_generated_tokens"] >= 4 * 16
