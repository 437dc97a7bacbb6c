"""Serving lab: which engine and settings meet my latency SLO at my traffic, and what does a
million output tokens cost?

    llmarch-lab run experiments/serving.yaml                  # both engines, concurrency sweeps
    llmarch-lab run experiments/quickstart.yaml --only serving
    # or interactively: notebooks/40_serving.ipynb

One run = one engine configuration under one load profile swept over levels (concurrency, or
requests/s for the open-loop profiles). The lab starts the engine on 127.0.0.1 (or uses any
OpenAI-compatible base URL with engine=external), checks it is healthy, warms it up, drives each
level with the async streaming client, and stops it, also when something fails. Per level it
logs the schema metrics as a series (step = level) so MLflow draws the curves; the run's headline
metrics are those of the operating point, the level with the most goodput under the SLO.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field, model_validator

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models
from llmarch_lab.config import EndpointFields
from llmarch_lab.labs.serving import deploy, metrics, report, workload
from llmarch_lab.llm import api_presets, engine_metrics, engines, load
from llmarch_lab.results import Result


class ServingParams(EndpointFields):
    lab = "serving"
    key_metrics = ("throughput.output_tok_per_s", "latency.ttft_ms_p99", "latency.tpot_ms_p50",
                   "throughput.goodput_req_per_s", "errors.error_rate", "throughput.roofline_efficiency")

    # target
    engine: Literal["llamacpp", "llama-server", "vllm", "openvino", "ctranslate2", "external"] = Field("llamacpp", description="llamacpp (llama-cpp-python, one request at a time), llama-server (llama.cpp's own, continuous batching over `parallel` slots), vllm, openvino (OpenVINO GenAI's continuous-batching pipeline on the GGUF) or ctranslate2 (int8, static batches): started by the lab on 127.0.0.1 from .engines/<engine> (make engine-<engine>; the last two through the lab's OpenAI adapter); external: base_url.")
    parallel: int = Field(1, ge=1, le=256, description="Sequences batched together: llama-server --parallel slots (each gets max_model_len of context), OpenVINO GenAI max_num_seqs, CTranslate2's largest batch; 1 for llamacpp and vllm (vLLM: --max-num-seqs in engine_args).")
    draft_model: str = Field("", description="llama-server speculative decoding: the draft model (GGUF spec, same tokenizer as model); '' for none. N-gram drafting needs no model: engine_args [--spec-type, ngram-simple].")
    scrape_interval_s: float = Field(0.5, gt=0, le=60, description="Seconds between scrapes of the engine's /metrics during each level (llama-server, vLLM).")
    model: str = Field(models.SMOLLM2, description="Model spec the lab's engine serves (alias, HF id, local folder or .gguf); for external, the served model name.")
    # base_url (engine=external only), api_key_env: config.EndpointFields
    api: Literal["openai", "vllm", "llama-server", "tgi", "triton"] = Field("openai", description="engine=external: the server family (llm/api_presets.py): its health route, /metrics and names, whether it checks `model` and takes ignore_eos. tgi: Hugging Face TGI's Messages API; triton: Triton's OpenAI frontend.")
    metrics_url: str = Field("", description="engine=external: the server's Prometheus URL when it is not the api preset's own <root>/metrics (tgi, triton, vllm, llama-server); not for api=openai, whose names are unknown.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="vLLM --dtype (llama.cpp serves the GGUF as it is).")
    max_model_len: int = Field(2048, ge=128, le=1_000_000, description="Context length the engine allocates (vLLM --max-model-len, llama.cpp --n_ctx).")
    engine_threads: int = Field(2, ge=1, le=512, description="CPU threads the engine uses (llama.cpp --n_threads, vLLM OMP binding 0..n-1).")
    engine_args: list[str] = Field([], description="Extra command-line arguments for the engine, e.g. ['--max-num-seqs', '32'].")
    ready_timeout_s: float = Field(300.0, gt=0, description="Seconds the engine may take to become healthy.")
    # load
    profile: Literal["synchronous", "concurrent", "constant", "poisson"] = Field("concurrent", description="synchronous | concurrent (closed loop) | constant or poisson (open loop, requests/s).")
    levels: list[float] = Field([1, 2, 4, 8], min_length=1, description="Concurrency levels (concurrent) or request rates per second (constant, poisson); synchronous ignores them.")
    max_requests: int = Field(16, ge=1, le=1_000_000, description="Requests per level at most.")
    max_seconds: float = Field(60.0, gt=0, description="Seconds per level at most (no new request after this).")
    request_timeout_s: float = Field(120.0, gt=0, description="A request still streaming after this many seconds counts as an error.")
    client: Literal["aiohttp", "wire"] = Field("aiohttp", description="The load generator's streaming client: aiohttp (any URL) or wire (plain http:// only: each chunk timed by the kernel's receive timestamp from the request's write, closed-loop streams started 2 ms apart; within 1.3% of a known truth where aiohttp was 19% off, benchmarks/serving_fidelity.py).")
    warmup_requests: int = Field(2, ge=0, le=1000, description="Synchronous requests sent before measuring (not counted).")
    # workload
    workload: Literal["synthetic", "pubmedqa", "pubmedqa-shared"] = Field("synthetic", description="synthetic (WikiText-2 text cut to exactly input_tokens), pubmedqa (question + abstract capped at input_tokens) or pubmedqa-shared (4 questions per abstract in a row, abstract first: a shared prefix for prompt caching).")
    input_tokens: int = Field(128, ge=1, le=1_000_000, description="Prompt tokens (synthetic) or abstract token cap (pubmedqa).")
    output_tokens: int = Field(64, ge=1, le=1_000_000, description="max_tokens per request.")
    fixed_output: bool = Field(True, description="Generate exactly output_tokens (vLLM ignore_eos; llama.cpp a -100 logit bias on end-of-turn) so load is comparable.")
    extra_body: dict = Field({}, description="Extra JSON fields for each request (engine-specific sampling options).")
    tokenizer: str = Field("", description="Tokenizer spec for prompt building and token counts when the engine sends no usage; '' = model, 'none' = count words/chunks.")
    # SLO, cost, roofline
    slo_ttft_ms: float = Field(200.0, gt=0, description="Goodput SLO: time to first token at most this (ms).")
    slo_tpot_ms: float = Field(50.0, gt=0, description="Goodput SLO: time per output token at most this (ms).")
    usd_per_hour: float = Field(0.10, ge=0, description="What the serving machine costs per hour (assumption; 0 = no cost metric). Default ~ a 2-vCPU cloud VM.")
    measure_bandwidth: bool = Field(True, description="Measure this machine's copy bandwidth for the roofline (lab-started engines only).")
    # deployment files emitted from this configuration
    deploy_model: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="Hugging Face id the emitted vLLM deployment serves on a GPU host.")
    deploy_dtype: Literal["bfloat16", "float16", "float32", "auto"] = Field("bfloat16", description="dtype in the emitted deployment.")
    deploy_gpus: int = Field(1, ge=1, le=64, description="GPUs per replica in the emitted deployment (>1 adds tensor parallelism).")

    @model_validator(mode="after")
    def _consistent(self):
        if self.engine == "external" and not self.base_url:
            raise ValueError("base_url: engine=external needs base_url (an OpenAI-compatible URL ending in /v1)")
        if self.engine != "external" and self.base_url:
            raise ValueError(f"base_url: only for engine=external; engine={self.engine} is started by the lab")
        if self.engine != "external" and (self.api != "openai" or self.metrics_url):
            raise ValueError(f"api: api and metrics_url are for engine=external; engine={self.engine} is started by the lab")
        if self.metrics_url and not api_presets.get(self.api).metrics_names:
            raise ValueError(f"metrics_url: api={self.api} has no known metric names; set api to the server "
                             "family (vllm, llama-server, tgi, triton)")
        if self.engine == "external" and self.fixed_output and not api_presets.get(self.api).ignore_eos:
            raise ValueError(f"fixed_output: the {self.api} API has no ignore_eos (exact output lengths); "
                             "set fixed_output: false (outputs then end where the model stops, counted from usage)")
        if any(v <= 0 for v in self.levels):
            raise ValueError("levels: every level must be > 0")
        if self.profile == "concurrent" and any(v != int(v) for v in self.levels):
            raise ValueError("levels: concurrency levels must be whole numbers")
        if sorted(self.levels) != list(self.levels) or len(set(self.levels)) != len(self.levels):
            raise ValueError("levels: give distinct levels in increasing order")
        if self.parallel != 1 and self.engine not in engines.BATCHED:
            raise ValueError(f"parallel: only {', '.join(engines.BATCHED)} take a batch size; engine={self.engine} needs parallel=1")
        if self.client == "wire" and (self.base_url or "").startswith("https://"):
            raise ValueError("client: wire speaks plain http:// only; use client=aiohttp for an https base_url")
        if self.draft_model and self.engine != "llama-server":
            raise ValueError(f"draft_model: only llama-server takes a draft model (engine={self.engine})")
        if self.input_tokens + self.output_tokens > self.max_model_len:
            raise ValueError(f"input_tokens + output_tokens ({self.input_tokens + self.output_tokens}) exceed max_model_len ({self.max_model_len})")
        return self

    def run_levels(self) -> list[float]:
        return [1.0] if self.profile == "synchronous" else [float(v) for v in self.levels]


def fixed_output_body(p: ServingParams, tok) -> dict:
    """Extra JSON fields for every request: the engine's way to generate exactly output_tokens
    (fixed_output), then the user's extra_body."""
    body: dict = {}
    if p.fixed_output:
        if p.engine == "llamacpp":
            # llama-cpp-python has no ignore_eos; a -100 bias on the end token has the same effect
            # (GGUF and Hugging Face tokenizers share token ids).
            eos = getattr(tok, "eos_token_id", None) if tok is not None else None
            if not isinstance(eos, int):
                raise LabError("fixed_output with llama.cpp needs a tokenizer to find the end token id "
                               "(set tokenizer, or fixed_output: false)")
            body["logit_bias"] = {str(eos): -100}
        else:
            body["ignore_eos"] = True  # vLLM, llama-server, SGLang (APIs without it are refused in validation)
    return {**body, **p.extra_body}


def tokenizer_for(p: ServingParams):
    """The tokenizer that counts prompt and output tokens (None: tokenizer=none, chunks are counted)."""
    if p.tokenizer == "none":
        return None
    spec = p.tokenizer or p.model
    if spec.endswith(".gguf"):
        raise LabError(f"tokenizer: a .gguf model needs tokenizer set to a Hugging Face id or folder (or 'none'), got {spec!r}")
    try:
        return models.load_tokenizer(spec)
    except LabError as e:
        raise LabError(f"tokenizer {spec!r} cannot be loaded ({e}); set the tokenizer parameter to a local "
                       "folder or Hugging Face id, or to 'none' to count chunks") from None


def run(p: ServingParams, on_level: Callable[[dict, int], None] | None = None, progress: bool = True) -> Result:
    res = Result(tags={"serving.engine": p.engine, "serving.api": p.api, "serving.profile": p.profile, "model": p.model,
                       "serving.workload": p.workload})
    tok = tokenizer_for(p)
    count = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])) if tok is not None else None
    # One prompt per request of the whole run (warm-up and every level), none sent twice: a repeated
    # prompt is a prompt-cache hit on engines that keep one (llama-server, vLLM's prefix cache), and
    # would make every level after the first measure cached prefills.
    n_pool = min(p.warmup_requests + p.max_requests * len(p.levels), 5000)  # (beyond 5000 they repeat)
    pool = workload.build(p.workload, tok, n_pool, p.input_tokens, p.output_tokens, p.seed)
    bandwidth = None
    if p.measure_bandwidth and p.engine != "external":
        bandwidth = metrics.copy_bandwidth_gbs(threads=p.engine_threads)  # before the engine runs
    log_path = paths.cache_dir() / "serving" / "logs" / f"{p.engine}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    target, eng = _target(p, tok, res, log_path)
    try:
        rows, sweep, per_level, crashed = _sweep(p, target, eng, pool, count, on_level, progress, res)
    finally:
        if eng is not None:
            eng.stop()
            res.texts["engine.log"] = log_path.read_text(errors="replace")[-2_000_000:] if log_path.exists() else ""
    op = _summarize(p, res, sweep, rows, per_level, eng, bandwidth)
    res.texts.update(deploy.render(deploy.DeployConfig(
        model=p.deploy_model, dtype=p.deploy_dtype, max_model_len=p.max_model_len, gpus=p.deploy_gpus,
        max_num_seqs=int(op) if p.profile == "concurrent" else 16)))
    if crashed:
        res.tags["llmarch.partial"] = "engine crashed: later levels not run; errors counted"
    return res


def _target(p: ServingParams, tok, res: Result, log_path: Path):
    """(load target, engine or None): the external URL, or an engine the lab starts now."""
    if p.engine == "external":
        preset = api_presets.get(p.api)
        api_presets.check_health(p.base_url, preset)
        target = load.Target(p.base_url, p.model, p.api_key_env, fixed_output_body(p, tok), p.request_timeout_s,
                             check_model=preset.model_checked)
        load.preflight(target)
        return target, None
    eng = engines.launch(p.engine, p.model, log_path=log_path, dtype=p.dtype, max_model_len=p.max_model_len,
                         threads=p.engine_threads, extra_args=p.engine_args, ready_timeout_s=p.ready_timeout_s,
                         parallel=p.parallel, draft_model=p.draft_model)
    res.add("latency.engine_start_s", eng.start_s)
    res.tags["serving.engine_command"] = " ".join(eng.command[1:])
    return load.Target(eng.base_url, eng.model_name, p.api_key_env, fixed_output_body(p, tok), p.request_timeout_s), eng


def _names_key(p: ServingParams) -> str:
    """Whose metric names the engine's /metrics has (engine_metrics.NAMES)."""
    return api_presets.get(p.api).metrics_names if p.engine == "external" else p.engine


def _metrics_url(p: ServingParams, eng) -> str | None:
    if eng is not None:
        return eng.metrics_url
    return p.metrics_url or api_presets.get(p.api).metrics_url(p.base_url)


def _sweep(p: ServingParams, target, eng, pool, count, on_level, progress: bool, res: Result):
    """Warm up, then drive every level; (request rows, sweep rows, {level: (metrics, records)}, crashed)."""
    from tqdm.auto import tqdm

    rows, sweep, per_level, engine_series = [], [], {}, []
    load.preflight(target)
    stream = workload.cycle(pool)
    if p.warmup_requests:
        warm, _ = load.run_level(target, stream, "synchronous", 1, p.warmup_requests, p.max_seconds,
                                 count_tokens=count, client=p.client)
        bad = [r.error for r in warm if not r.ok]
        if len(bad) == len(warm):
            raise LabError(f"endpoint {target.base_url}: every warm-up request failed: {bad[0]}")
    levels = p.run_levels()
    bar = tqdm(total=len(levels) * p.max_requests, desc=f"{p.engine} {p.profile}", disable=not progress)
    try:
        for i, level in enumerate(levels):
            bar.set_postfix(level=f"{level:g}")
            with engine_metrics.Scraper(_metrics_url(p, eng), _names_key(p), p.scrape_interval_s) as sc:
                recs, wall = load.run_level(target, stream, p.profile, level, p.max_requests, p.max_seconds,
                                            seed=p.seed + i, count_tokens=count, progress=bar, client=p.client)
            m = metrics.summarize(recs, wall, p.slo_ttft_ms, p.slo_tpot_ms, p.usd_per_hour)
            series = sc.frame()
            em = engine_metrics.summarize(series, _names_key(p), len(recs))
            ok_ttft = [r.ttft_ms for r in recs if r.ok and r.ttft_ms is not None]
            # What the client waits beyond the engine's own TTFT (vLLM) or prompt time (llama-server):
            # queueing in front of the engine and transport.
            engine_ttft = em.get("latency.engine_ttft_ms_mean", em.get("latency.engine_prefill_ms_mean"))
            if engine_ttft is not None and ok_ttft:
                em["latency.client_minus_engine_ttft_ms_mean"] = sum(ok_ttft) / len(ok_ttft) - engine_ttft
            m.update(em)
            if len(series):
                engine_series.append(series.assign(level=level))
            per_level[level] = (m, recs)
            sweep.append({**report.sweep_row(level, len(recs), m), "wall_s": wall,
                          **{k.split(".", 1)[1]: v for k, v in em.items()}})
            rows += [r.row() for r in recs]
            if on_level is not None:
                step = int(level) if p.profile not in ("constant", "poisson") else i
                on_level({k.replace(".", ".sweep.", 1): v for k, v in m.items()}, step)
            if eng is not None and not eng.alive():
                res.tags["serving.engine_crashed"] = f"exit code {eng.proc.returncode} during level {level:g}"
                return rows, sweep, per_level, True
    finally:
        bar.close()
        if engine_series:
            import pandas as pd

            res.tables["engine_metrics"] = pd.concat(engine_series, ignore_index=True)
    return rows, sweep, per_level, False


def _summarize(p: ServingParams, res: Result, sweep: list, rows: list, per_level: dict, eng, bandwidth) -> float:
    """Tables, headline metrics (the operating point), roofline and plots; returns the operating level."""
    import pandas as pd

    sweep_df = pd.DataFrame(sweep)
    closed_loop = p.profile in ("concurrent", "synchronous")  # level 1 = one stream (not 1 request/s)
    base = sweep_df[sweep_df.level == 1.0]
    if closed_loop and len(base) and base.output_tok_per_s.iloc[0] > 0:
        sweep_df["speedup_vs_level1"] = sweep_df.output_tok_per_s / base.output_tok_per_s.iloc[0]
    res.tables["sweep"] = sweep_df
    req_df = pd.DataFrame(rows)
    req_df["text"] = req_df.text.str.slice(0, 200)
    res.tables["requests"] = req_df

    # The operating point: most goodput under the SLO; with none meeting it, most throughput.
    key = "goodput_req_per_s" if sweep_df.goodput_req_per_s.max() > 0 else "output_tok_per_s"
    op = float(sweep_df.loc[sweep_df[key].idxmax(), "level"])
    res.tags["serving.operating_level"] = f"{op:g}"
    res.tags["serving.operating_point_by"] = key
    for k, v in per_level[op][0].items():
        res.add(k, v)
    res.add("throughput.max_output_tok_per_s", sweep_df.output_tok_per_s.max())
    res.add("errors.error_rate_all_levels", sweep_df.errors.sum() / max(sweep_df.requests.sum(), 1))
    sat = report.saturation_level(sweep_df)
    if sat is not None:
        res.tags["serving.saturation_level"] = f"{sat:g}"
    if "speedup_vs_level1" in sweep_df:
        res.add("throughput.max_speedup_vs_level1", sweep_df.speedup_vs_level1.max())

    # Single-stream decode rate: 1000 / TPOT p50 at level 1 (pure decode, prefill excluded).
    if closed_loop and 1.0 in per_level and "latency.tpot_ms_p50" in per_level[1.0][0]:
        single = 1000.0 / per_level[1.0][0]["latency.tpot_ms_p50"]
        res.add("throughput.single_stream_decode_tok_per_s", single)
        if eng is not None and bandwidth:
            for k, v in metrics.roofline(single, eng.weights_bytes, bandwidth).items():
                res.add(k, v)
            res.tags["serving.weights"] = f"{eng.weights_dtype}, {eng.weights_bytes / 2**20:.1f} MB"

    level_name = "concurrency" if closed_loop else "requests/s"
    title = f"{p.engine} ({p.model if p.engine == 'external' else Path(p.model).name})"
    res.figures["latency_vs_throughput"] = report.latency_vs_throughput(sweep_df, title, level_name)
    res.figures["ttft_cdf"] = report.ttft_cdf(req_df, title, p.slo_ttft_ms)
    if "engine_metrics" in res.tables:
        res.figures["engine_metrics"] = report.engine_metrics(res.tables["engine_metrics"], req_df, title,
                                                              engine_metrics.NAMES.get(_names_key(p), {}))
    return op
