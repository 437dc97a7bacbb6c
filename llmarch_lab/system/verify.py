"""End-to-end check of a recommended system on this machine: start it for real, drive it at the
load one replica sees at peak, compare measured with predicted.

    out = verify.run(choice, log_dir)   # {"table": DataFrame, "records": DataFrame, ...}

What is started: the engine of the recommended serving run (its own parameters: engine, model,
dtype, threads, engine args) and, when the system has a guard and `verify.guard` is on, the
guardrails lab's LiteLLM gateway with that guard in front of it. The load is the serving lab's
generator (llm/load.py) in open loop (Poisson) at peak_rps / replicas, with the requirements'
prompt/output token counts (synthetic WikiText-2 prompts, exact length). Everything started is
stopped on every exit path.

Predicted: the chooser's interpolated latencies at that rate (with the guard's added latency);
throughput = the offered rate (an open loop under capacity serves what it is offered).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from llmarch_lab import LabError

COMPARED = (  # (label, predicted column in the candidate row / key, measured metric)
    ("TTFT p50 (ms)", "ttft_ms_p50", "latency.ttft_ms_p50"),
    ("TTFT p99 (ms)", "ttft_ms_p99", "latency.ttft_ms_p99"),
    ("TPOT p50 (ms)", "tpot_ms_p50", "latency.tpot_ms_p50"),
    ("e2e p99 (ms)", "e2e_ms_p99", "latency.e2e_ms_p99"),
    ("throughput (req/s)", "req_per_s", "throughput.req_per_s"),
    ("output tokens/s", "output_tok_per_s", "throughput.output_tok_per_s"),
)


def serving_params(params: dict):
    """The serving run's ServingParams back from its MLflow params (JSON-encoded unless strings)."""
    from llmarch_lab.labs.serving.lab import ServingParams

    values: dict = {}
    extra: dict = {}
    for k, v in params.items():
        if k.startswith("extra_body."):
            extra[k.split(".", 1)[1]] = _decode(v)
        elif k in ServingParams.model_fields:
            ann = ServingParams.model_fields[k].annotation
            values[k] = v if ann is str else _decode(v)
    if extra:
        values["extra_body"] = extra
    return ServingParams(**values)


def _decode(v: str):
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def run(choice, log_dir: Path, progress: bool = True) -> dict:
    """Start the recommended system, drive it, and return the predicted-vs-measured table."""
    import pandas as pd

    from llmarch_lab.labs.serving import metrics as smetrics
    from llmarch_lab.labs.serving import workload
    from llmarch_lab.labs.serving.lab import _tokenizer, fixed_output_body
    from llmarch_lab.llm import engines, load

    if not choice.feasible:
        raise LabError("verify: no system meets the requirements; nothing to verify")
    req, row = choice.req, choice.row()
    serving = next(s for s in choice.comps.serving if s.run_id == row.serving_run)
    p = serving_params(serving.params)
    tok = _tokenizer(p)
    count = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])) if tok is not None else None
    w = req.workload
    pool = workload.build("synthetic", tok, max(32, req.verify.requests), w.prompt_tokens, w.output_tokens, seed=1)
    rate = float(row.per_replica_rps)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    guard_on = row.guard != "none" and req.verify.guard
    eng = engines.launch(p.engine, p.model, log_path=log_dir / "engine.log", dtype=p.dtype,
                         max_model_len=max(p.max_model_len, w.prompt_tokens + w.output_tokens + 64),
                         threads=p.engine_threads, extra_args=p.engine_args, ready_timeout_s=p.ready_timeout_s)
    gw = None
    try:
        base_url, name, key_env = eng.base_url, eng.model_name, ""
        if guard_on:
            from llmarch_lab.labs.guardrails import gateway, stack

            cfg = stack.default_config(injection_detector=row.guard, pii_config=req.safety.pii_config)
            gw = gateway.launch(eng.base_url, cfg, log_dir / "gateway.log", model_name=eng.model_name)
            base_url, key_env = gw.base_url, gw.api_key_env
        target = load.Target(base_url, name, key_env, fixed_output_body(p, tok), p.request_timeout_s)
        load.preflight(target)
        stream = workload.cycle(pool)
        load.run_level(target, stream, "synchronous", 1, 2, 60.0, count_tokens=count)  # warm-up
        recs, wall = load.run_level(target, stream, "poisson", rate, req.verify.requests, req.verify.max_seconds,
                                    seed=7, count_tokens=count)
    finally:
        if gw is not None:
            gw.__exit__(None, None, None)  # stops both processes, forgets the master key
        eng.stop()
    m = smetrics.summarize(recs, wall, req.slos.ttft_ms_p99 or 1e9, req.slos.tpot_ms_p50 or 1e9, 0.0)
    predicted = dict(row)
    predicted["req_per_s"] = rate
    predicted["output_tok_per_s"] = rate * w.output_tokens
    lines = []
    for label, pk, mk in COMPARED:
        pv, mv = predicted.get(pk), m.get(mk)
        err = 100.0 * (mv - pv) / pv if pv and mv is not None else float("nan")
        lines.append({"metric": label, "predicted": pv, "measured": mv, "error_pct": err,
                      "within_15pct": abs(err) <= 15.0 if err == err else False})
    table = pd.DataFrame(lines)
    return {"table": table, "records": pd.DataFrame([r.row() for r in recs]), "rate_rps": rate,
            "requests": len(recs), "errors": sum(not r.ok for r in recs), "guarded": guard_on,
            "engine_command": " ".join(eng.command[1:]), "wall_s": time.perf_counter() - started,
            "metrics": m}

