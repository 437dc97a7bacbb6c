"""The cost lab's routed gateway, all real: two llama.cpp engines (SmolLM2 small, Qwen2.5-Coder-0.5B
large), the LiteLLM proxy from .engines/litellm with the lab's pre-call hook, the router service in
this venv with a tiny real router (a length rule, pickled like routing.save does)."""

import os
import time

import httpx
import numpy as np
import psutil
import pytest

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models
from llmarch_lab.labs.cost import gateway, routing
from llmarch_lab.llm import engines

HAVE_LITELLM = (paths.home() / ".engines" / "litellm" / "bin" / "python").exists() or \
    bool(os.environ.get("LLMARCH_LITELLM_PYTHON"))
needs_litellm = pytest.mark.skipif(not HAVE_LITELLM, reason="no .engines/litellm: run `make engine-litellm`")


class LengthRouter(routing.Router):
    """Score = characters of the prompt: long prompts go to the large model."""

    name = "length"
    needs_text = True

    def score(self, df):
        return np.array([float(len(p)) for p in df["prompt"]])


THRESHOLD = 60.0
PROMPTS = [
    "Hi!",
    "Name a colour.",
    "Explain in detail why the sky is blue during the day and red at sunset, with the physics.",
    "Write a Python function that returns the n-th Fibonacci number using memoisation, with tests.",
    "What is 2+2?",
    "Compare quicksort and mergesort: time complexity, stability and memory use.",
]


def _gone(pids, wait_s=10.0):
    t = time.time() + wait_s
    while time.time() < t:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("cost-eng")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # both start at once (each is its own process group)
        futs = [pool.submit(engines.launch, "llamacpp", m, log_path=d / f"{n}.log", max_model_len=2048)
                for n, m in (("small", models.SMOLLM2), ("large", "qwen2.5-coder-0.5b-instruct"))]
        started = []
        try:
            started = [f.result() for f in futs]
        finally:
            if len(started) < 2:
                for f in futs:
                    if f.exception() is None:
                        f.result().stop()
    with started[0] as small, started[1] as large:
        yield small, large


def _chat(gw, model, text, max_tokens=8):
    return httpx.post(gw.base_url + "/chat/completions", headers=gw.headers(), timeout=120,
                      json={"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                            "temperature": 0.0})


def _port(url):
    return httpx.URL(url).port


@needs_litellm
@pytest.mark.slow
def test_routed_gateway_routes_like_the_router_and_leaves_nothing(pair, tmp_path):
    small, large = pair
    router_path = routing.save(LengthRouter(), tmp_path / "router.joblib")
    expect = {p: gateway.decide(len(p), THRESHOLD) for p in PROMPTS}
    assert set(expect.values()) == {"small", "large"}  # the prompts exercise both routes
    with gateway.launch(small.base_url, small.model_name, large.base_url, large.model_name, router_path, THRESHOLD,
                        log_path=tmp_path / "gw.log") as gw:
        print(f"gateway up in {gw.start_s:.1f} s")
        t_up = time.perf_counter()
        pids = gw.pids()
        kids = [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        engine_port = {"small": _port(small.base_url), "large": _port(large.base_url)}
        assert _chat(gw, "auto", "hi").status_code == 200  # the proxy's first call pays its lazy imports
        n0 = len(gw.decisions())

        call_ids, some = [], PROMPTS[1:3]  # one each way (overhead() below checks all of them)
        for p in some:
            r = _chat(gw, "auto", p)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"].strip()
            assert r.headers["x-llmarch-route"] == expect[p], p
            assert float(r.headers["x-llmarch-route-score"]) == len(p)
            assert float(r.headers["x-llmarch-router-ms"]) > 0
            # LiteLLM's own record of the deployment it called: the right engine answered
            assert _port(r.headers["x-litellm-model-api-base"]) == engine_port[expect[p]], r.headers
            call_ids.append(r.headers["x-litellm-call-id"])

        dec = gw.decisions().iloc[n0:].reset_index(drop=True)
        assert list(dec["model"]) == [expect[p] for p in some]
        assert list(dec["score"]) == [float(len(p)) for p in some]
        assert list(dec["request_id"]) == call_ids
        assert (dec["router_ms"] > 0).all()

        for m in ("small", "large"):  # direct calls bypass the router
            r = _chat(gw, m, "Say yes.", max_tokens=2)
            assert r.status_code == 200 and "x-llmarch-route" not in r.headers
            assert _port(r.headers["x-litellm-model-api-base"]) == engine_port[m]
        assert len(gw.decisions()) == n0 + len(some)
        names = {m["id"] for m in httpx.get(gw.base_url + "/models", headers=gw.headers()).json()["data"]}
        assert {"auto", "small", "large"} <= names

        n1, t1 = len(gw.decisions()), time.perf_counter()
        bench = PROMPTS[:4]  # two each way
        res = gateway.overhead(gw, small.base_url, bench, max_tokens=8)
        print(f"checks {t1 - t_up:.1f} s, overhead() {time.perf_counter() - t1:.1f} s")
        assert list(gw.decisions()["model"].iloc[n1:]) == [expect[p] for p in bench]
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items() if k != "requests"})
        assert res["n_errors"] == 0 and res["decision_agreement"] == 1.0 and res["score_max_abs_diff"] == 0.0
        assert res["large_share_measured"] == res["large_share_offline"] == 0.5
        assert len(res["requests"]) == 3 * len(bench)
        for k in ("ttft_engine_ms_p50", "ttft_proxy_small_ms_p50", "ttft_auto_small_ms_p50", "ttft_auto_large_ms_p50",
                  "router_score_ms_p50", "router_overhead_ms", "proxy_overhead_ms", "router_overhead_paired_ms",
                  "proxy_overhead_paired_ms"):
            assert np.isfinite(res[k]), k

        # the router service gone: the hook fails over to the large model and says so
        gw.procs["router"].kill()
        gw.procs["router"].wait()
        r = _chat(gw, "auto", "Hi!")
        assert r.status_code == 200 and r.headers["x-llmarch-route"] == "large" and r.headers["x-llmarch-route-fallback"]
        assert _port(r.headers["x-litellm-model-api-base"]) == engine_port["large"]
        key_env = gw.api_key_env
    assert _gone(pids + kids), "gateway processes left after exit"
    assert key_env not in os.environ


def test_bad_router_fails_before_any_process_starts(tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    args = ("http://127.0.0.1:1/v1", "s", "http://127.0.0.1:2/v1", "l")
    with pytest.raises(LabError, match="no such file"):
        gateway.launch(*args, tmp_path / "missing.joblib", 0.5, log_path=tmp_path / "gw.log")
    import joblib

    joblib.dump({"not": "a router"}, tmp_path / "dict.joblib")
    with pytest.raises(LabError, match="not a router"):
        gateway.launch(*args, tmp_path / "dict.joblib", 0.5, log_path=tmp_path / "gw.log")
    routing.save(LengthRouter(), tmp_path / "ok.joblib")
    with pytest.raises(LabError, match="threshold"):
        gateway.launch(*args, tmp_path / "ok.joblib", "high", log_path=tmp_path / "gw.log")
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    assert not (tmp_path / "gw.log").exists()
