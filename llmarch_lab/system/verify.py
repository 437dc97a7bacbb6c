"""End-to-end check of a recommended system on this machine: start it for real, drive it at the
load one replica sees at peak, compare measured with predicted.

    out = verify.run(choice, log_dir)   # {"table": DataFrame, "records": DataFrame, ...}

What is started: the engine of the recommended serving run (its own parameters: engine, model,
dtype, threads, engine args) and, when the system has a guard and `verify.guard` is on, the
guardrails lab's LiteLLM gateway with that guard in front of it. The load is the serving lab's
generator (llm/load.py) in open loop (Poisson) at peak_rps / replicas, with the requirements'
prompt/output token counts (verify.workload: synthetic WikiText-2 prompts of exact length, or
real PubMedQA questions with abstracts cut to about that length). Everything started is stopped
on every exit path (`standing`, shared with ops/stack_quality.py).

Predicted: the chooser's open-loop model (simulated queue over the serving run's measured
requests, plus the guard's added latency and stream holdback) at the arrival rate the generator
really produced; throughput over the measured span = n / ((n - 1) / rate + e2e p50).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from llmarch_lab import LabError, registry

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
    ServingParams = registry.service("serving.params")  # noqa: N806 - a class
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

    from llmarch_lab.llm import load

    fixed_output_body, tokenizer_for = registry.service("serving.fixed_output_body"), registry.service("serving.tokenizer_for")

    if not choice.feasible:
        raise LabError("verify: no system meets the requirements; nothing to verify")
    req, row = choice.req, choice.row()
    serving = next(s for s in choice.comps.serving if s.run_id == row.serving_run)
    p = serving_params(serving.params)
    tok = tokenizer_for(p)
    count = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])) if tok is not None else None
    w = req.workload
    warm, cal_before, pool, cal_after = _pools(req, tok, serving)
    rate = float(row.per_replica_rps)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    guard_on = row.guard != "none" and req.verify.guard
    with standing(p, row.guard if guard_on else "none", req.safety.pii_config, log_dir,
                  w.prompt_tokens + w.output_tokens + 64) as st:
        target = load.Target(st.base_url, st.model, st.key_env, fixed_output_body(p, tok), p.request_timeout_s)
        load.preflight(target)
        cycle = registry.service("serving.cycle")
        load.run_level(target, cycle(warm), "synchronous", 1, len(warm), 60.0, count_tokens=count)  # warm-up
        sweep = _engine_sweep(st, serving, p, tok, cal_before, count, req.verify.calibration_requests)
        recs, wall = load.run_level(target, cycle(pool), "poisson", rate, req.verify.requests, req.verify.max_seconds,
                                    seed=7, count_tokens=count)
        sweep += _engine_sweep(st, serving, p, tok, cal_after, count, req.verify.calibration_requests)
        scrapes = _scrape(st.engine.base_url, st.gateway.base_url if st.gateway is not None else None)
    cfg = st.guard_cfg
    by_guard = _answered_by_guard(recs, cfg if guard_on else None)
    answered = [r for r in recs if r not in by_guard]
    m = registry.service("serving.summarize")(answered, wall, req.slos.ttft_ms_p99 or 1e9, req.slos.tpot_ms_p50 or 1e9, 0.0)
    # The generator draws Poisson arrivals; with a few dozen requests their realised rate is off the
    # nominal one by tens of percent. The prediction is made again at the realised rate, from the
    # same measured components (the chooser's open_loop, sizing.py), so that the check tests the
    # model, not the random draw.
    from llmarch_lab.system import records, sizing

    ok = [r for r in recs if r.ok and r.e2e_ms is not None]
    starts = sorted(r.start_ms for r in recs)
    realised = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1000.0) if len(starts) > 1 and starts[-1] > starts[0] else rate
    guard = next((g for g in choice.comps.guards if g.detector == row.guard), records.Guard("none")) if guard_on \
        else records.Guard("none")
    engine_rate = realised * len(answered) / len(recs) if recs else realised
    predicted = sizing.open_loop(serving, serving.levels, engine_rate, guard) or dict(row)
    # Throughput over the measured span (first send to last answer): n / ((n - 1) / rate + e2e).
    span_s = (max(r.start_ms + r.e2e_ms for r in ok) - starts[0]) / 1000.0 if ok else float("nan")
    m["throughput.req_per_s"] = len(ok) / span_s if ok else 0.0
    m["throughput.output_tok_per_s"] = sum(r.output_tokens for r in ok) / span_s if ok else 0.0
    pred_span = (len(starts) - 1) / realised + (predicted.get("e2e_ms_p50") or 0.0) / 1000.0
    predicted["req_per_s"] = len(starts) / pred_span
    predicted["output_tok_per_s"] = predicted["req_per_s"] * w.output_tokens
    eng_ok = [r for r in answered if r.ok and r.e2e_ms is not None]
    sweep_df = pd.DataFrame([r.row() for r in sweep])
    on_trace = predict_on_trace(serving, guard, sweep_df, pd.DataFrame([r.row() for r in eng_ok]), len(ok)) \
        if eng_ok and serving.engine == "llama-server" else {}
    lines = []
    for label, pk, mk in COMPARED:
        pv, mv, tv = predicted.get(pk), m.get(mk), on_trace.get(pk)
        err, terr = (100.0 * (mv - v) / v if v and mv is not None else float("nan") for v in (pv, tv))
        lines.append({"metric": label, "predicted": pv, "measured": mv, "error_pct": err,
                      "within_15pct": abs(err) <= 15.0 if err == err else False,
                      "predicted_on_trace": tv, "error_on_trace_pct": terr,
                      "within_15pct_on_trace": abs(terr) <= 15.0 if terr == terr else False})
    table = pd.DataFrame(lines)
    return {"table": table, "records": pd.DataFrame([r.row() for r in recs]), "rate_rps": rate, "realised_rps": realised,
            "requests": len(recs), "errors": sum(not r.ok for r in recs), "guarded": guard_on, "by_guard": len(by_guard),
            "engine_rps": engine_rate, "workload": req.verify.workload, "sweep": _sweep_summary(sweep_df),
            "sweep_records": sweep_df,
            "prompt_tokens_mean": sum(r.prompt_tokens for r in pool) / len(pool),
            "engine_command": " ".join(st.engine.command[1:]), "wall_s": time.perf_counter() - started,
            "metrics": m, "scrapes": scrapes}


def sweep_levels(serving) -> list[int]:
    """The concurrency levels of the at-check engine sweep: the serving run's (llama-server only)."""
    return sorted({int(x["level"]) for x in serving.levels}) if serving.engine == "llama-server" else []


def _pools(req, tok, serving) -> tuple[list, list, list, list]:
    """Distinct prompts for the warm-up (2), the sweep before, the check and the sweep after: a
    prompt seen once is in llama-server's prompt cache (slots and RAM), and a repeat skips its prefill."""
    n_cal = req.verify.calibration_requests * len(sweep_levels(serving))
    pool = check_pool(req, tok, extra=2 + 2 * n_cal)
    return pool[:2], pool[2:2 + n_cal], pool[2 + n_cal:len(pool) - n_cal], pool[len(pool) - n_cal:]


def _engine_sweep(st, serving, p, tok, prompts: list, count, n: int) -> list:
    """llama-server: the serving run's closed-loop sweep again (its concurrency levels, n requests
    each), on the engine itself (not through the gateway) with the check's prompts: the step cost
    the machine has now. The VM this runs on drifts (the same sweep, hours apart, 35% slower), and
    near saturation that moves a p99 by more than 2x (docs/results/system.md)."""
    from llmarch_lab.llm import load

    if n <= 0 or not prompts:
        return []
    body = registry.service("serving.fixed_output_body")(p, tok)
    eng = load.Target(st.engine.base_url, st.engine.model_name, "", body, p.request_timeout_s)
    stream, out = registry.service("serving.cycle")(prompts), []
    for lv in sweep_levels(serving):
        recs, _ = load.run_level(eng, stream, "concurrent", lv, n, 300.0, count_tokens=count)
        out += [r for r in recs if r.ok]
    return out


def _sweep_summary(sweep) -> list[dict]:
    """TTFT and TPOT p50 per level of the at-check sweeps' table (before and after together)."""
    if sweep.empty:
        return []
    return sweep.groupby("level")[["ttft_ms", "tpot_ms"]].median().reset_index().to_dict("records")


def predict_on_trace(serving, guard, sweep, engine_reqs, n_ok: int) -> dict:
    """The slot model (sizing.slot_latencies), its step cost calibrated on the at-check `sweep`
    (a per-request table; the serving run's own sweep if empty), fed the send times, prompt and
    output lengths of the requests that reached the engine (`engine_reqs`, a table with start_ms,
    prompt_tokens, output_tokens): a prediction of these very requests, free of the Poisson draw's
    luck (300 requests put a p99 on its 3rd-slowest). Throughput: the n_ok answered requests
    (the guard's own answers included, as measured) over the predicted span. Also used by
    benchmarks/system_check_replay.py on a saved report."""
    import numpy as np

    from llmarch_lab.common import stats
    from llmarch_lab.system import sizing

    at_check = replace(serving, requests=sweep) if len(sweep) else serving
    sent = engine_reqs.start_ms.to_numpy(float)
    outs = engine_reqs.output_tokens.to_numpy(int)
    lat = sizing.slot_latencies(at_check, guard, sent, engine_reqs.prompt_tokens.to_numpy(int), outs)
    out = {}
    for k in ("ttft_ms", "tpot_ms", "e2e_ms"):
        out.update(stats.percentiles(lat[k][~np.isnan(lat[k])], k))  # {ttft_ms_p50, ...}
    span_s = (np.nanmax(sent + lat["e2e_ms"]) - sent.min()) / 1000.0
    out["req_per_s"], out["output_tok_per_s"] = n_ok / span_s, outs.sum() / span_s
    out["step_cost"] = lat["step_cost"]
    return out


def check_pool(req, tok, extra: int = 0) -> list:
    """The check's requests (`extra` more for the warm-up and the engine sweeps): synthetic
    WikiText-2 prompts of exactly workload.prompt_tokens, or real PubMedQA questions with their
    abstracts cut so the mean prompt is about that long (the abstract's cap lowered by the
    question's and the framing's mean length)."""
    build, w = registry.service("serving.workload"), req.workload
    n = max(32, req.verify.requests) + extra
    pool = build(req.verify.workload, tok, n, w.prompt_tokens, w.output_tokens, seed=1)
    if req.verify.workload != "synthetic":
        over = sum(r.prompt_tokens for r in pool) / len(pool) - w.prompt_tokens
        pool = build(req.verify.workload, tok, n, max(16, round(w.prompt_tokens - over)), w.output_tokens, seed=1)
    return pool


@dataclass
class Stood:
    """A started system: where to send requests (the gateway when guarded, else the engine)."""
    base_url: str
    model: str
    key_env: str
    engine: object  # llm.engines.Engine
    gateway: object | None = None  # the guardrails lab's gateway handle
    guard_cfg: object | None = None  # its guard stack's config (block and hold messages)


@contextmanager
def standing(p, guard: str, pii_config, log_dir: Path, min_model_len: int = 0):
    """Start the engine of serving params `p` and, unless guard is "none", the guardrails lab's
    LiteLLM gateway with that injection detector in front of it; yield a Stood; stop both on
    every exit path (the end-to-end check and the stack quality measurement share it)."""
    from llmarch_lab.llm import engines

    eng = engines.launch(p.engine, p.model, log_path=log_dir / "engine.log", dtype=p.dtype,
                         max_model_len=max(p.max_model_len, min_model_len),
                         threads=p.engine_threads, extra_args=p.engine_args, ready_timeout_s=p.ready_timeout_s,
                         parallel=p.parallel)
    gw = None
    try:
        st = Stood(eng.base_url, eng.model_name, "", eng)
        if guard != "none":
            st.guard_cfg = registry.service("guardrails.default_stack")(injection_detector=guard, pii_config=pii_config)
            gw = registry.service("guardrails.launch_gateway")(eng.base_url, st.guard_cfg, log_dir / "gateway.log",
                                                               model_name=eng.model_name, prometheus=True)
            st.gateway, st.base_url, st.key_env = gw, gw.base_url, gw.api_key_env
        yield st
    finally:
        if gw is not None:
            gw.__exit__(None, None, None)  # stops both processes, forgets the master key
        eng.stop()


def _answered_by_guard(recs, guard_cfg) -> list:
    """Requests the guard answered itself (blocked, or held for a human reviewer): they never reach
    the engine, a canned reply in tens of ms. The latencies compared are the engine-answered ones,
    predicted at the share of the rate that reached the engine; how many the guard took is
    reported (a benign workload the guard holds is a finding)."""
    if guard_cfg is None:
        return []
    canned = canned_replies(guard_cfg)
    return [r for r in recs if r.ok and r.text.strip() in canned]


def canned_replies(guard_cfg) -> set[str]:
    """The replies the guard gives itself (its block and hold messages), stripped."""
    return {guard_cfg.block_message.strip(), guard_cfg.hold_message.strip()}


def _scrape(engine_base_url: str, gateway_base_url: str | None) -> dict:
    """GET /metrics of the engine and the gateway after the load: {"engine": text or "",
    "gateway": text, "engine_status": code}. llama-cpp-python serves none (404)."""
    import httpx

    out = {}
    for who, base in (("engine", engine_base_url), ("gateway", gateway_base_url)):
        if not base:
            continue
        try:
            r = httpx.get(base.removesuffix("/v1") + "/metrics", timeout=10.0, follow_redirects=True)  # LiteLLM: /metrics/
            out[f"{who}_status"] = r.status_code
            out[who] = r.text if r.status_code == 200 and "# TYPE" in r.text else ""
        except httpx.HTTPError as e:
            out[f"{who}_status"] = type(e).__name__
            out[who] = ""
    return out

