"""Verification by replay: a plan stood up for real and the trace sent through it.

    from llmarch_lab.labs.cost.scenario import replay
    out = replay.run(spec, trace, items, pairs, log_dir=d, large_gguf=..., small_gguf=..., router_name="minilm-lr")
    out.summary    # requests, wall s, measured s/request, quality, shares (cache / small / large)

What runs: the large model's llama-server at the plan's precision with `online_concurrency` slots;
the small model's llama-server when the plan routes; the router (fitted on every measured
question: a deployment trains on all it has) inside the LiteLLM gateway (labs/cost/gateway) in
front of both; the semantic cache and the Selective Context compressor in this process, before the
gateway. `online_concurrency` workers take the trace's requests in order: cache lookup, and on a
miss compression (PubMedQA), the call through the gateway, scoring (outcomes.answer), cache insert.

The measured cost is the replay's wall time per request: every part above runs on this machine, so
that is machine time per request, the plan's own unit. Quality is each answer scored against the
request's own gold (a wrong cache hit can still be right by chance; the plan counts it as 0).

Stated limits: paraphrase requests follow the trace's composed cache outcome (there are no real
paraphrases of these questions; the plan does the same); the plan's offline share is not replayed
(the replay is the online path, compared with the same plan without the offline share).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from llmarch_lab import LabError


@dataclass
class Replayed:
    requests: object   # one row per request: request_id, qid, task, served_by, correct, seconds
    summary: dict


def _router_file(pairs, router_name: str, path: Path) -> Path:
    from llmarch_lab.labs.cost import routing

    r = routing.make(router_name)
    r.fit(pairs)
    return routing.save(r, path)


def _worker(state: dict, lock: threading.Lock, *args) -> None:
    try:
        _worker_loop(state, lock, *args)
    except BaseException as e:  # noqa: BLE001 - reported by run() after every worker stopped
        with lock:
            state.setdefault("error", e)
            state["next"] = len(state["rows"])  # the other workers stop too


def _worker_loop(state: dict, lock: threading.Lock, ep, cache, compressor, spec, items, out: list) -> None:
    from llmarch_lab.assets import tasks
    from llmarch_lab.labs.cost import outcomes

    while True:
        with lock:
            if state["next"] >= len(state["rows"]):
                return
            r = state["rows"][state["next"]]
            state["next"] += 1
        q = items[r["qid"]]
        t0 = time.perf_counter()
        hit = None
        if r["kind"] == "paraphrase":
            if r["cache_outcome"] == "correct_hit" and spec.cache:
                hit = ("composed", q["qid"])
        elif spec.cache:
            with lock:
                h = cache.get(q["prompt"])
            hit = None if h is None else h.answer
        if hit is not None:
            src = items[hit[1]]
            with lock:
                first = state["answers"].get(hit[1])
            correct = float(first is not None and first["task"] == q["task"] and
                            (first["pred"] == q["gold"] if q["task"] == "pubmedqa" else
                             tasks.gsm8k_correct(first["pred"], q["gold"])))
            out.append({"request_id": r["request_id"], "qid": q["qid"], "task": q["task"], "served_by": "cache",
                        "correct": correct, "cache_source": src["qid"], "seconds": time.perf_counter() - t0})
            continue
        row = {**q, "style": spec.style_gsm8k if q["task"] == "gsm8k" else "full", "max_tokens": state["max_tokens"]}
        if spec.compress != 1.0 and q["task"] == "pubmedqa":
            with lock:  # one compressor model: one text at a time
                row["payload"] = compressor.compress(q["payload"], spec.compress)
        res = outcomes.answer(ep, row)
        with lock:
            state["answers"].setdefault(q["qid"], {"pred": res["pred"], "task": q["task"]})
            if spec.cache and r["kind"] != "paraphrase":
                cache.put(q["prompt"], ("replayed", q["qid"]))
        out.append({"request_id": r["request_id"], "qid": q["qid"], "task": q["task"], "served_by": "model",
                    "correct": float(res["correct"]), "prompt_tokens": res["prompt_tokens"],
                    "output_tokens": res["output_tokens"], "seconds": time.perf_counter() - t0})


def run(spec, trace, items, pairs, *, log_dir: Path, large_gguf: str, small_gguf: str = "",
        router_name: str = "minilm-lr", max_tokens: int = 320, compressor=None) -> Replayed:
    """Replay `trace` (plan.Measured's trace: request_id, qid, kind, cache_outcome) through `spec`
    (a plan.Plan) stood up for real. `items`: the questions (outcomes.sample rows); `pairs`: the
    measured small/large outcome frame the router is fitted on."""
    import pandas as pd

    from llmarch_lab.labs.cost import cache as cache_mod
    from llmarch_lab.labs.cost import gateway
    from llmarch_lab.llm import engines

    if spec.route is not None and not small_gguf:
        raise LabError("replay: the plan routes, so it needs small_gguf (the small model's file)")
    if spec.compress != 1.0 and compressor is None:
        raise LabError("replay: the plan compresses, so it needs a compressor")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    c = spec.online_concurrency
    by_qid = {r["qid"]: r for r in items.to_dict("records")}
    rows = trace[["request_id", "qid", "kind", "cache_outcome"]].to_dict("records")
    out: list[dict] = []
    with engines.launch("llama-server", model=large_gguf, log_path=log_dir / "replay-large.log", max_model_len=2048,
                        threads=2, parallel=c, name="large") as large:
        small = (engines.launch("llama-server", model=small_gguf, log_path=log_dir / "replay-small.log",
                                max_model_len=2048, threads=2, parallel=c, name="small") if spec.route is not None else None)
        try:
            router = _router_file(pairs, router_name, log_dir / "router.joblib")
            # No routing: every score goes large (a finite number: "-inf" reads as an option to argparse).
            threshold = spec.route if spec.route is not None else -1.0e9
            s_url, s_name = (small.base_url, "small") if small else (large.base_url, "large")
            with gateway.launch(s_url, s_name, large.base_url, "large", router, threshold,
                                  log_dir / "replay-gateway.log", run_dir=log_dir / "gateway") as gw:
                state = {"rows": rows, "next": 0, "answers": {}, "max_tokens": max_tokens}
                lock = threading.Lock()
                cache = cache_mod.SemanticCache(cache_mod.CHOSEN)
                t0 = time.perf_counter()
                threads = [threading.Thread(target=_worker, args=(state, lock, gw.endpoint(timeout_s=900), cache, compressor, spec,
                                                                       by_qid, out))
                           for _ in range(c)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                routed = gw.decisions()
        finally:
            if small is not None:
                small.stop()
    if "error" in state:
        err = state["error"]
        raise err if isinstance(err, LabError) else LabError(f"replay: a request failed: {err}") from err
    if len(out) != len(rows):
        raise LabError(f"replay: {len(rows) - len(out)} of {len(rows)} requests failed (logs in {log_dir})")
    df = pd.DataFrame(out).sort_values("request_id").reset_index(drop=True)
    model_rows = df["served_by"] == "model"
    share_small = float((routed["model"] == "small").sum()) / len(df) if small is not None and len(routed) else 0.0
    summary = {"requests": len(df), "wall_s": wall, "s_per_request": wall / len(df), "quality": float(df["correct"].mean()),
               "share_cache": float((~model_rows).mean()), "share_small": share_small,
               "share_large": float(model_rows.mean()) - share_small, "online_concurrency": c,
               "plan": replace(spec, offline_share=0.0).name()}
    return Replayed(df, summary)
