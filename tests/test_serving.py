"""Serving lab: a real llama.cpp engine (started once per session), a real trivial streaming
server on 127.0.0.1 for fault injection, and hand-checked metric arithmetic."""

import itertools
import time

import pytest
import yaml

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.labs.serving import deploy, metrics, workload
from llmarch_lab.labs.serving.lab import ServingParams, run
from llmarch_lab.llm import engines, load


def _reqs(max_tokens=8):
    return (load.Request(i, [{"role": "user", "content": f"Count to ten, please ({i})."}], max_tokens)
            for i in itertools.count())


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory):
    """One real llama.cpp server for this module (stopped when it ends, not at the end of the
    session, where it would outlive every later module): SmolLM2 GGUF, 2 threads, on 127.0.0.1."""
    eng = engines.launch("llamacpp", models.SMOLLM2, log_path=tmp_path_factory.mktemp("eng") / "llamacpp.log")
    yield eng
    eng.stop()
    assert not eng.alive()


@pytest.fixture(scope="session")
def tok():
    return models.load_tokenizer(models.SMOLLM2)


# ------------------------------------------------------------------ the real engine

def test_llamacpp_streams_fixed_length_with_real_timings(llamacpp, tok):
    from llmarch_lab.labs.serving.lab import fixed_output_body

    p = ServingParams(engine="llamacpp", output_tokens=12)
    target = load.Target(llamacpp.base_url, llamacpp.model_name, extra_body=fixed_output_body(p, tok))
    assert load.preflight(target) == [llamacpp.model_name]
    recs, wall = load.run_level(target, _reqs(12), "concurrent", 2, max_requests=4, max_seconds=60)
    assert len(recs) == 4 and all(r.ok for r in recs), [r.error for r in recs]
    for r in recs:
        assert r.output_tokens == 12, (r.output_tokens, r.text)  # end tokens biased away: exact length
        assert 0 < r.ttft_ms < r.e2e_ms
        assert len(r.itl_ms) == r.chunks - 1
        assert r.tpot_ms == pytest.approx((r.e2e_ms - r.ttft_ms) / 11)
        assert r.text.strip()
    # llama.cpp serves one request at a time: with 2 in flight the second waits, so TTFT grows.
    m = metrics.summarize(recs, wall)
    assert m["throughput.output_tok_per_s"] == pytest.approx(48 / wall)
    assert m["errors.error_rate"] == 0


def test_engine_crash_mid_run_counts_remaining_requests(tmp_path):
    eng = engines.launch("llamacpp", models.SMOLLM2, log_path=tmp_path / "crash.log")
    target = load.Target(eng.base_url, eng.model_name, timeout_s=30)

    def requests():  # one at a time; the engine is SIGKILLed when the 4th request is due
        for r in _reqs(8):
            if r.id == 3:
                eng.proc.kill()
                eng.proc.wait()
            yield r

    with eng:
        recs, _ = load.run_level(target, requests(), "concurrent", 1, max_requests=40, max_seconds=60)
    assert len(recs) == 40  # every request is accounted for
    ok, bad = [r for r in recs if r.ok], [r for r in recs if not r.ok]
    assert [r.id for r in ok] == [0, 1, 2]
    # A request sent on a kept-alive connection at the moment of the kill fails writing its body
    # (ClientOSError / ServerDisconnected); every later one fails to connect.
    lost = ("Connect", "ClientOSError", "ServerDisconnected")
    assert all(any(x in r.error for x in lost) for r in bad), [r.error for r in bad][:3]
    assert sum("Connect" in r.error for r in bad) >= len(bad) - 1
    assert metrics.summarize(recs, 1.0)["errors.error_rate"] == len(bad) / 40
    assert not eng.alive()


def test_missing_engine_environment_says_which_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMARCH_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(LabError, match="make engine-vllm"):
        engines.engine_python("vllm")
    with pytest.raises(LabError, match="engine 'tgi'"):
        engines.engine_python("tgi")


def test_lab_run_against_external_engine_gives_sweep_and_artifacts(llamacpp, store):
    p = ServingParams(engine="external", base_url=llamacpp.base_url, model=llamacpp.model_name,
                      tokenizer=models.SMOLLM2, levels=[1, 2], max_requests=3, input_tokens=32, output_tokens=8,
                      warmup_requests=1, usd_per_hour=1.0, extra_body={"logit_bias": {"2": -100}})
    res = run(p, progress=False)
    sweep = res.tables["sweep"]
    assert list(sweep.level) == [1.0, 2.0] and list(sweep.requests) == [3, 3]
    assert len(res.tables["requests"]) == 6
    m = res.metrics
    assert m["errors.error_rate"] == 0
    assert m["latency.ttft_ms_p50"] <= m["latency.ttft_ms_p99"] <= m["latency.e2e_ms_p99"]
    # cost = $/h / (tok/s * 3600) * 1e6, at the operating point
    assert m["cost.usd_per_1m_output_tokens"] == pytest.approx(1.0 / 3600 / m["throughput.output_tok_per_s"] * 1e6)
    assert m["throughput.single_stream_decode_tok_per_s"] > 1
    assert {"latency_vs_throughput", "ttft_cdf"} <= set(res.figures)
    assert "serving.operating_level" in res.tags
    assert yaml.safe_load(res.texts["deploy/docker-compose.yaml"])["services"]


# ------------------------------------------------------------------ faults, on a real loopback server

@pytest.mark.parametrize("client", load.CLIENTS)
@pytest.mark.parametrize("server", [{"tokens": 10, "malformed_every": 3}], indirect=True)
def test_malformed_chunks_are_counted_not_fatal(server, client):
    recs, _ = load.run_level(load.Target(server, "loopback"), _reqs(10), "concurrent", 2, max_requests=6, client=client)
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert all(r.malformed_chunks == 3 for r in recs)  # chunks 3, 6, 9 are preceded by garbage
    assert all(r.output_tokens == 10 and r.usage_reported for r in recs)
    assert metrics.summarize(recs, 1.0)["count.malformed_chunks"] == 18


@pytest.mark.parametrize("client", load.CLIENTS)
@pytest.mark.parametrize("server", [{"die_after": 5}], indirect=True)
def test_server_death_turns_the_rest_into_errors(server, client):
    recs, _ = load.run_level(load.Target(server, "loopback", timeout_s=10), _reqs(4), "concurrent", 2,
                             max_requests=12, max_seconds=30, client=client)
    assert len(recs) == 12
    # The server exits when the 6th request arrives; with two in flight, the 5th may still be
    # streaming then and be cut off with the rest.
    assert sum(r.ok for r in recs) in (4, 5)
    assert all("Error" in r.error or "refused" in r.error.lower() or r.error for r in recs if not r.ok)


@pytest.mark.parametrize("server", [{"die_after": 3}], indirect=True)
def test_lab_run_keeps_partial_results_when_the_server_dies(server, store):
    from llmarch_lab.store import tracking

    p = ServingParams(engine="external", base_url=server, model="loopback", tokenizer="none", levels=[1, 2],
                      max_requests=4, warmup_requests=1, output_tokens=8, request_timeout_s=10)
    res = run(p, progress=False)  # warm-up takes request 1; requests 2-3 succeed, the rest fail
    sweep = res.tables["sweep"]
    assert list(sweep.errors) == [2, 4]
    assert res.metrics["errors.error_rate_all_levels"] == 6 / 8
    assert (res.tables["requests"].error != "").sum() == 6
    lab_run = tracking.start(p, notebook="40_serving")
    lab_run.log_result(res)
    lab_run.close()
    logged = tracking.search("interactive")[0]["metrics"]
    assert logged["errors.error_rate_all_levels"] == 0.75


@pytest.mark.parametrize("server", [dict(tokens=6, ttft_ms=30, chunk_delay_ms=10)], indirect=True)
def test_wire_client_gives_the_same_records_and_brackets_the_servers_clock(server):
    """client="wire" (the socket client timed by the kernel): the same Record fields and values
    as aiohttp's; its clock starts before the server's (the request is written before it
    arrives) and stops after it (a chunk is received after it is sent): perf_counter is
    CLOCK_MONOTONIC, one clock for the whole machine."""
    import asyncio
    import dataclasses

    import httpx

    from llmarch_lab.llm.endpoint import wire

    t = load.Target(server, "loopback")
    got = {c: load.run_level(t, _reqs(6), "concurrent", 3, max_requests=6, client=c)[0] for c in load.CLIENTS}
    for a, w in zip(got["aiohttp"], got["wire"]):
        assert w.ok and a.ok, (w.error, a.error)
        assert [f.name for f in dataclasses.fields(w)] == [f.name for f in dataclasses.fields(a)]
        assert (w.id, w.text, w.chunks, w.output_tokens, w.prompt_tokens, w.usage_reported, w.reconnects) == \
            (a.id, a.text, a.chunks, a.output_tokens, a.prompt_tokens, a.usage_reported, a.reconnects)
        assert len(w.itl_ms) == 5 and 0 < w.ttft_ms < w.e2e_ms and w.start_ms >= 0
        assert w.tpot_ms == pytest.approx((w.e2e_ms - w.ttft_ms) / 5)
    root = server.removesuffix("/v1")

    async def three():
        async with t.session(client="wire") as pool:
            sts = [await t.astream_chat([{"role": "user", "content": "hi"}], 6, session=pool) for _ in range(3)]
            return sts, [c.stamped for c in pool.idle]

    httpx.post(root + "/truth/reset").raise_for_status()
    sts, stamped = asyncio.run(three())
    truth = sorted(httpx.get(root + "/truth").json()["requests"], key=lambda r: r["arrived"])
    assert stamped == [wire.SO_TIMESTAMPNS is not None]  # one connection, kept alive; kernel-timed on Linux
    for st, r in zip(sts, truth):
        assert st.error == "" and st.chunks == 6
        assert st.t0 <= r["arrived"]
        assert st.t0 + st.ttft_ms / 1000 >= r["sent"][0] - 1e-4  # 0.1 ms: the realtime-to-monotonic conversion


def test_wire_client_sends_again_once_on_a_stale_connection():
    """A server that closes every connection after its answer, without saying so: the kept-alive
    connection is stale at the next request, which is sent once more on a new one (reconnects)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for ev in (b'data: {"choices": [{"delta": {"content": " hi"}}]}\n\n', b"data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        recs, _ = load.run_level(load.Target(url, "m", timeout_s=10), _reqs(4), "synchronous", 1, max_requests=3,
                                 client="wire")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [(r.ok, r.text, r.reconnects) for r in recs] == [(True, " hi", 0), (True, " hi", 1), (True, " hi", 1)]


def test_wire_client_is_plain_http_only():
    with pytest.raises(LabError, match="plain http://"):
        load.run_level(load.Target("https://api.example.com/v1", "m"), _reqs(4), client="wire")
    with pytest.raises(LabError, match="client 'curl'"):
        load.run_level(load.Target("http://127.0.0.1:9/v1", "m"), _reqs(4), client="curl")


def test_unreachable_url_fails_fast_with_the_url():
    port = engines.free_port()
    t0 = time.perf_counter()
    with pytest.raises(LabError, match=f"127.0.0.1:{port}.*unreachable"):
        load.preflight(load.Target(f"http://127.0.0.1:{port}/v1", "m"))
    assert time.perf_counter() - t0 < 6


def test_wrong_path_and_wrong_model_are_named(server):
    with pytest.raises(LabError, match="HTTP 404"):
        load.preflight(load.Target(server.removesuffix("/v1") + "/nope", "loopback"))
    with pytest.raises(LabError, match="does not serve model 'gpt-x'.*loopback"):
        load.preflight(load.Target(server, "gpt-x"))


def test_open_loop_profiles_pace_arrivals(server):
    t = load.Target(server, "loopback")
    recs, _ = load.run_level(t, _reqs(2), "constant", 20, max_requests=10, max_seconds=30)
    starts = [r.start_ms for r in recs]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(r.ok for r in recs) and min(gaps) > 30 and sum(gaps) / len(gaps) == pytest.approx(50, abs=12)
    a, _ = load.run_level(t, _reqs(2), "poisson", 50, max_requests=8, seed=7)
    b, _ = load.run_level(t, _reqs(2), "poisson", 50, max_requests=8, seed=7)
    ga = [y.start_ms - x.start_ms for x, y in zip(a, a[1:])]
    gb = [y.start_ms - x.start_ms for x, y in zip(b, b[1:])]
    assert len(set(round(g, -1) for g in ga)) > 2  # exponential gaps, not constant
    assert max(abs(x - y) for x, y in zip(ga, gb)) < 15  # same seed, same schedule (within jitter)


def test_duration_bound_stops_a_level(server):
    recs, wall = load.run_level(load.Target(server, "loopback"), _reqs(2), "constant", 5, max_requests=1000,
                                max_seconds=1.0)
    assert 4 <= len(recs) <= 7 and wall < 3


@pytest.mark.parametrize("server", [dict(tokens=6, ttft_ms=80, chunk_delay_ms=15, max_concurrency=2)], indirect=True)
def test_truth_server_records_its_own_timing_and_queues(server):
    """The fidelity benchmark's ground truth: the server keeps to its schedule, queues beyond its
    slots, and records what it did; the lab's client, measured against it, sees the same."""
    import httpx

    from llmarch_lab.labs.serving import fidelity, metrics

    root = server.removesuffix("/v1")
    t = load.Target(server, "loopback")
    load.run_level(t, _reqs(6), "concurrent", 1, max_requests=1)  # warm-up
    httpx.post(root + "/truth/reset").raise_for_status()
    recs, wall = load.run_level(t, _reqs(6), "concurrent", 4, max_requests=8, max_seconds=60)
    truth = httpx.get(root + "/truth").json()
    reqs = truth["requests"]
    assert len(reqs) == 8 and all(len(r["sent"]) == 6 for r in reqs)
    for r in reqs:  # a fixed schedule: chunk i is never sent before 80 + 15 i ms after arrival
        assert all(s - r["arrived"] >= 0.080 + 0.015 * i - 1e-4 for i, s in enumerate(r["sent"]))
    # Two slots, four streams: at any moment at most two requests are being sent ...
    spans = [(r["sent"][0], r["sent"][-1]) for r in reqs]
    assert max(sum(a <= t0 <= b for a, b in spans) for t0, _ in spans) <= 2
    # ... so half of the requests waited a whole request (80 + 5 * 15 ms) before their first chunk.
    tr = fidelity.truth_metrics(truth)
    assert tr["requests"] == 8 and tr["ttft_p99_ms"] > 80 + 150
    m = fidelity.from_lab(metrics.summarize(recs, wall))
    err = fidelity.errors(m, tr)
    assert set(err) == set(fidelity.METRICS) and fidelity.worst([err]) == max(abs(v) for v in err.values())
    # The client sees the queueing too (its TTFT p99 is a waiting request's), within a few ms.
    assert m["ttft_p99_ms"] == pytest.approx(tr["ttft_p99_ms"], abs=25)
    httpx.post(root + "/truth/reset").raise_for_status()
    with pytest.raises(LabError, match="no streamed request"):
        fidelity.truth_metrics(httpx.get(root + "/truth").json())


def test_fidelity_errors_are_signed_percentages():
    from llmarch_lab.labs.serving import fidelity

    e = fidelity.errors({"ttft_p50_ms": 110, "ttft_p99_ms": None, "itl_p50_ms": 19, "output_tok_per_s": 50},
                        {"ttft_p50_ms": 100, "ttft_p99_ms": 200, "itl_p50_ms": 20, "output_tok_per_s": 50})
    assert e["ttft_p50_ms"] == pytest.approx(10) and e["itl_p50_ms"] == pytest.approx(-5)
    assert e["output_tok_per_s"] == 0 and e["ttft_p99_ms"] != e["ttft_p99_ms"]  # NaN: not measured
    assert fidelity.worst([e]) == pytest.approx(10)


# ------------------------------------------------------------------ arithmetic, deployment, params

def test_summary_matches_hand_computation():
    recs = [load.Record(0, ttft_ms=100, e2e_ms=500, tpot_ms=40, itl_ms=[40] * 10, output_tokens=11, prompt_tokens=5),
            load.Record(1, ttft_ms=300, e2e_ms=700, tpot_ms=40, itl_ms=[40] * 10, output_tokens=11, prompt_tokens=5),
            load.Record(2, ttft_ms=150, e2e_ms=1150, tpot_ms=100, itl_ms=[100] * 10, output_tokens=11, prompt_tokens=5),
            load.Record(3, error="timeout after 60 s")]
    m = metrics.summarize(recs, wall_s=2.0, slo_ttft_ms=200, slo_tpot_ms=50, usd_per_hour=3.6)
    assert m["latency.ttft_ms_p50"] == 150
    assert m["latency.ttft_ms_p90"] == pytest.approx(150 + 0.8 * 150)  # numpy linear interpolation
    assert m["throughput.output_tok_per_s"] == 33 / 2.0
    assert m["throughput.req_per_s"] == 1.5
    assert m["throughput.goodput_req_per_s"] == 0.5  # only request 0 meets both limits
    assert m["quality.slo_attainment"] == 0.25
    assert m["errors.error_rate"] == 0.25
    assert m["cost.usd_per_1m_output_tokens"] == pytest.approx(3.6 / 3600 / 16.5 * 1e6)
    assert m["latency.itl_ms_p50"] == 40


def test_roofline_arithmetic():
    r = metrics.roofline(single_stream_tok_per_s=50, weights_bytes=500_000_000, bandwidth_gbs=10)
    assert r["throughput.roofline_decode_tok_per_s"] == 20 * 1
    assert r["throughput.roofline_efficiency"] == 2.5  # above 1 means the weights did not all come from RAM
    assert metrics.copy_bandwidth_gbs(mb=64, repeats=2) > 0.5


def test_synthetic_workload_has_exact_token_lengths(tok):
    reqs = workload.build("synthetic", tok, n=5, input_tokens=40, output_tokens=7, seed=1)
    lens = [len(tok(r.messages[0]["content"], add_special_tokens=False)["input_ids"]) for r in reqs]
    assert all(abs(n - 40) <= 1 for n in lens), lens  # decode/re-encode may merge one boundary token
    assert len({r.messages[0]["content"][:50] for r in reqs}) == 5  # distinct prefixes
    pq = workload.build("pubmedqa", tok, n=3, input_tokens=30, output_tokens=7)
    assert all("Question:" in r.messages[0]["content"] for r in pq)
    with pytest.raises(LabError, match="workload 'x'"):
        workload.build("x", tok, 1, 1, 1)


def test_deployment_files_parse_and_carry_the_configuration():
    c = deploy.DeployConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct", max_num_seqs=24, gpus=2, max_model_len=4096)
    texts = deploy.render(c)
    svc = yaml.safe_load(texts["deploy/docker-compose.yaml"])["services"]["llm"]
    cmd = svc["command"]
    assert cmd[cmd.index("--model") + 1] == c.model
    assert cmd[cmd.index("--max-num-seqs") + 1] == "24"
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
    assert svc["ports"] == ["8000:8000"] and svc["image"].startswith("vllm/vllm-openai:")
    assert svc["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    docs = list(yaml.safe_load_all(texts["deploy/k8s.yaml"]))
    dep, service = (next(d for d in docs if d["kind"] == k) for k in ("Deployment", "Service"))
    assert dep["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    assert ctr["ports"][0]["containerPort"] == service["spec"]["ports"][0]["targetPort"] == 8000
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "--max-model-len" in ctr["args"] and "4096" in ctr["args"]
    assert "value" not in ctr["env"][0]  # the API key comes from a Secret, never inline



def test_one_deployment_generator_serves_the_bundle_and_the_serving_lab():
    from llmarch_lab.common.deploy import compose_service

    cpu = compose_service("img", ["--port", "8080"], 8080, "/health", volumes=["./models:/models:ro"], cpus="2",
                          memory="4Gi")
    assert cpu["deploy"] == {"resources": {"limits": {"cpus": "2", "memory": "4G"}}}
    assert cpu["healthcheck"]["test"][-1] == "http://localhost:8080/health" and "restart" not in cpu
    gpu = compose_service("img", [], 8000, "/v1/models", gpus=1, restart="unless-stopped", ipc="host")
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1
    assert list(gpu)[-1] == "restart" and gpu["ipc"] == "host"


@pytest.mark.parametrize("kw,msg", [
    ({"engine": "external"}, "needs base_url"),
    ({"base_url": "http://x/v1"}, "only for engine=external"),
    ({"levels": [4, 2]}, "increasing"),
    ({"levels": [1.5]}, "whole numbers"),
    ({"input_tokens": 2000, "output_tokens": 100}, "exceed max_model_len"),
    ({"engine": "tgi"}, "engine"),
    ({"api_key": "sk-123"}, "api_key"),
    ({"api": "tgi"}, "engine=external"),
    ({"engine": "external", "base_url": "http://x/v1", "api": "triton"}, "fixed_output.*no ignore_eos"),
    ({"engine": "external", "base_url": "http://x/v1", "metrics_url": "http://x/metrics"}, "metrics_url: api=openai"),
])
def test_bad_parameters_name_the_field(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ServingParams(**kw)


# 20 ms between tokens: a request takes its time in sleeps, not in CPU, so four streams are clearly
# faster than one even on a loaded machine (without it, level 4 was once 0.80x level 1 in CI).
@pytest.mark.parametrize("server", [{"chunk_delay_ms": 20}], indirect=True)
def test_suite_report_tabulates_every_level_of_every_run(server, store, write):
    """Two notebook runs through the real runner (against the loopback server), then the table."""
    from llmarch_lab import config
    from llmarch_lab.labs.serving import report as suite_report
    from llmarch_lab.run import runner

    suite = write("sv.yaml", f"""
suite: sv
runs:
  - name: closed
    notebook: 40_serving
    params: {{engine: external, base_url: "{server}", model: loopback, tokenizer: none, levels: [1, 4],
             max_requests: 8, output_tokens: 8, warmup_requests: 1}}
  - name: open
    notebook: 40_serving
    params: {{engine: external, base_url: "{server}", model: loopback, tokenizer: none, profile: poisson,
             levels: [5, 10], max_requests: 6, output_tokens: 8, warmup_requests: 0}}
""")
    out = runner.run_suite(config.load_suite(suite), progress=False)
    assert [o.status for o in out] == ["FINISHED", "FINISHED"], [o.error for o in out]
    # The benchmark driver (benchmarks/serving_knobs.py) puts the table and the trade-off plot on
    # the suite's parent run, which the runner has ended by then.
    from llmarch_lab.run import bench
    from llmarch_lab.store import tracking

    assert bench.sweep_main("doc", str(suite), "serving", ["--report-only"]) == 0
    parent = tracking.search("sv", tags={"llmarch.parent": "true"}, status="")[0]["run_id"]
    logged = {a.path for a in tracking.client().list_artifacts(parent, "plots")}
    assert "plots/ttft_p99_vs_throughput.png" in logged, logged
    df = suite_report.compare("sv")
    assert sorted(zip(df.run, df.level)) == [("closed", 1.0), ("closed", 4.0), ("open", 5.0), ("open", 10.0)]
    closed = df[df.run == "closed"].set_index("level")
    assert closed.speedup_vs_level1[1.0] == 1.0 and closed.speedup_vs_level1[4.0] > 1.0
    assert (df.error_rate == 0).all() and (df.output_tok_per_s > 0).all()
    assert "| closed" in suite_report.report("sv").markdown()


@pytest.mark.parametrize("server", [{"api_key": "sk-loopback-secret-123"}], indirect=True)
def test_api_key_comes_from_the_environment_and_is_never_logged(server, store, monkeypatch):
    from llmarch_lab.store import tracking

    with pytest.raises(LabError, match="HTTP 401.*API key"):
        load.preflight(load.Target(server, "loopback"))
    monkeypatch.setenv("MY_ENDPOINT_KEY", "sk-loopback-secret-123")
    p = ServingParams(engine="external", base_url=server, model="loopback", api_key_env="MY_ENDPOINT_KEY",
                      tokenizer="none", levels=[2], max_requests=4, output_tokens=4, warmup_requests=0)
    res = run(p, progress=False)
    assert res.metrics["errors.error_rate"] == 0
    lab_run = tracking.start(p, notebook="40_serving")
    lab_run.log_result(res)
    lab_run.close()
    logged = tracking.search("interactive")[0]
    everything = str(logged["params"]) + str(logged["tags"]) + res.tables["requests"].to_csv()
    assert "sk-loopback-secret-123" not in everything


# ------------------------------------------------------------------ other servers' stream formats

@pytest.fixture
def imitation(request):
    """A loopback server speaking TGI's or Triton's documented stream format (llm/api_presets.py)."""
    from llmarch_lab.llm import loopback

    api, kw = request.param
    proc, base = loopback.start(api=api, tokens=8, chunk_delay_ms=20, ttft_ms=100, max_concurrency=2, **kw)
    yield api, base
    proc.kill()
    proc.wait(10)


@pytest.mark.parametrize("imitation", [("tgi", {})], indirect=True)
def test_lab_against_tgi_messages_api(imitation):
    """TGI: `data:` without a space, keep-alive comments, the role in every chunk, an empty
    end-of-sequence chunk, usage in a chunk of its own; any model name; /metrics with tgi_* names."""
    _, base = imitation
    p = ServingParams(engine="external", api="tgi", base_url=base, model="tgi", tokenizer=models.SMOLLM2, fixed_output=False,
                      levels=[1, 4], max_requests=8, input_tokens=32, output_tokens=16, warmup_requests=1,
                      scrape_interval_s=0.05, measure_bandwidth=False)
    res = run(p, progress=False)
    req = res.tables["requests"]
    assert (req.error == "").all(), req.error.tolist()
    # 8 text chunks (the answer's natural length), usage says 9 (TGI counts the end token)
    assert set(req.output_tokens) == {9} and set(req.chunks) == {8}
    assert (req.ttft_ms >= 100).all()
    sweep = res.tables["sweep"].set_index("level")
    # 4 streams against 2 server slots: the engine's own gauges saw a queue and a full batch
    assert sweep.loc[4.0, "engine_queue_max"] >= 1 and 1 <= sweep.loc[4.0, "engine_running_max"] <= 2
    assert sweep.loc[4.0, "engine_generated_tokens"] == 8 * 9
    assert set(res.tables["engine_metrics"].metric) >= {"tgi_queue_size", "tgi_batch_current_size"}
    assert res.tags["serving.api"] == "tgi"


@pytest.mark.parametrize("imitation", [("triton", {"tokens_per_chunk": 2, "model": "qwen", "usage": False})],
                         indirect=True)
def test_lab_against_triton_openai_frontend(imitation, tok):
    """Triton: a role-only first chunk (not the first token), two tokens per chunk, no usage (the
    lab counts with the tokenizer), 422 for a field outside OpenAI's schema, 400 for a wrong model."""
    _, base = imitation
    common = dict(engine="external", api="triton", base_url=base, fixed_output=False, levels=[2], max_requests=4,
                  input_tokens=32, output_tokens=8, warmup_requests=1, measure_bandwidth=False,
                  tokenizer=models.SMOLLM2, scrape_interval_s=0.05)
    res = run(ServingParams(model="qwen", **common), progress=False)
    req = res.tables["requests"]
    assert (req.error == "").all(), req.error.tolist()
    assert set(req.chunks) == {4}  # 8 tokens, 2 per chunk; the role chunk is not content
    assert (req.ttft_ms >= 100).all()
    counted = len(tok(" t0 t1 t2 t3 t4 t5 t6 t7", add_special_tokens=False)["input_ids"])
    assert set(req.output_tokens) == {counted} and not req.usage_reported.any()
    assert "nv_inference_pending_request_count" in set(res.tables["engine_metrics"].metric)
    with pytest.raises(LabError, match="422.*ignore_eos"):  # what a vLLM-style extra field gets
        run(ServingParams(model="qwen", extra_body={"ignore_eos": True}, **common), progress=False)
    with pytest.raises(LabError, match="does not serve model 'tgi'"):
        run(ServingParams(model="tgi", **common), progress=False)


def test_preset_health_check_names_the_url():
    from llmarch_lab.llm import api_presets, loopback

    url = f"http://127.0.0.1:{loopback.free_port()}/v1"
    with pytest.raises(LabError, match=r"triton health check http://127\.0\.0\.1:\d+/health/ready"):
        api_presets.check_health(url, api_presets.get("triton"), timeout_s=2)
