"""The end-to-end study: llama.cpp + SmolLM2 behind the guarded LiteLLM gateway, the support trace
sent to the bare engine and to the gateway (same requests, interleaved), and the summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.support.driver import AuditTail, ask, decisions, outcome
from llmarch_lab.labs.guardrails.support.quality import minilm_cosine, token_f1
from llmarch_lab.labs.guardrails.support.trace import CLASSES, build_trace

COUNTERS = ("guard_decisions_total", "guard_requests_total")


def send_trace(trace, eng, gw, block_message: str, hold_message: str, max_tokens: int) -> list[dict]:
    """Each request to the bare engine and to the gateway, one at a time; who goes first alternates
    (the engine reuses the previous prompt's prefix, so neither side always gets that)."""
    import httpx

    tail = AuditTail(gw.audit_path)
    rows = []
    with httpx.Client(timeout=180) as bare_c, httpx.Client(timeout=180, headers=gw.headers()) as gw_c:
        for w in ("Hello, can you help me?", "Thanks!"):  # warm-up, not measured
            ask(bare_c, eng.base_url, eng.model_name, w, 8)
            ask(gw_c, gw.base_url, gw.model_name, w, 8)
        tail.new()
        for r in trace.itertuples(index=False):
            order = ("bare", "guarded") if r.id % 2 == 0 else ("guarded", "bare")
            got = {}
            for side in order:
                c, url, model = (bare_c, eng.base_url, eng.model_name) if side == "bare" else \
                    (gw_c, gw.base_url, gw.model_name)
                got[side] = ask(c, url, model, r.text, max_tokens)
            recs = tail.new()
            row = {"id": r.id, "cls": r.cls, "source": r.source, "text": r.text[:200], "reference": r.reference}
            for side in ("bare", "guarded"):
                o, fin, content = outcome(got[side]["status"], got[side]["body"], block_message, hold_message)
                row.update({f"{side}_outcome": o, f"{side}_finish": fin, f"{side}_answer": content,
                            f"{side}_ms": got[side]["ms"], f"{side}_status": got[side]["status"]})
            rows.append({**row, **decisions(recs)})
    return rows


def summarize(df) -> dict:
    """Per class: requests, stopped (block + hold), blocked, held, redacted; the benign false
    blocks; the added latency on requests the guard passed unchanged; answer quality on the
    benign questions with a reference, guarded and bare."""
    import numpy as np

    from llmarch_lab.common.stats import percentiles

    per = []
    for cls in CLASSES:
        d = df[df["cls"] == cls]
        if not len(d):
            continue
        red = (d["input_action"] == "redact") | (d["output_action"] == "redact")
        per.append({"cls": cls, "n": len(d), "block_rate": float((d["guarded_outcome"] == "block").mean()),
                    "hold_rate": float((d["guarded_outcome"] == "hold").mean()),
                    "stopped_rate": float(d["guarded_outcome"].isin(["block", "hold"]).mean()),
                    "redact_rate": float(red.mean()), "bare_stopped_rate": float(d["bare_outcome"].isin(["block", "hold"]).mean())})
    out: dict = {"per_class": per}
    ben = df[df["cls"] == "benign"]
    out["benign_false_block_rate"] = float(ben["guarded_outcome"].isin(["block", "hold"]).mean()) if len(ben) else float("nan")
    # the same prompt reached the model on both sides: the difference is the proxy hop + the guard
    same = df[(df["input_action"] == "allow") & (df["guarded_outcome"] == "answer") & (df["bare_outcome"] == "answer")]
    out["n_latency_pairs"] = len(same)
    if len(same):
        out["added_ms"] = percentiles(same["guarded_ms"] - same["bare_ms"], "added_ms")
        out["bare_ms"] = percentiles(same["bare_ms"], "bare_ms")
    out["guard_ms"] = percentiles(df["guard_ms"], "guard_ms")
    q = ben[ben["reference"].astype(str).str.strip() != ""]
    out["n_quality"] = len(q)
    if len(q):
        for side in ("guarded", "bare"):
            out[f"f1_{side}"] = float(np.mean([token_f1(a, r) for a, r in zip(q[f"{side}_answer"], q["reference"])]))
            out[f"cosine_{side}"] = float(np.mean(minilm_cosine(q[f"{side}_answer"].tolist(), q["reference"].tolist())))
    errs = int((df["guarded_outcome"] == "error").sum() + (df["bare_outcome"] == "error").sum())
    out["errors"] = errs
    return out


def prometheus_rows(samples: dict) -> list[dict]:
    """The guard service's counters (GatewayGuard.guard_metrics()) as rows for a table."""
    return [{"metric": name, **dict(labels), "value": v} for (name, labels), v in sorted(samples.items())
            if name in COUNTERS]


def study(out_dir, n: int = 60, seed: int = 0, guard_config=None, max_tokens: int = 48, mix: dict | None = None,
          engine: str = "llamacpp", engine_threads: int = 2, ready_timeout_s: float = 600.0) -> dict:
    """Engine (llama.cpp: "llamacpp" = llama-cpp-python's server, or "llama-server") + guarded
    gateway on loopback, the trace through both; rows, summary, counters. ready_timeout_s: the guard
    service loads every detector before it answers (minutes on a loaded 2-core machine)."""
    import pandas as pd

    from llmarch_lab.assets import models
    from llmarch_lab.labs.guardrails import gateway, stack
    from llmarch_lab.llm import engines

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = guard_config or stack.default_config()
    trace = build_trace(n, seed, mix)
    t0 = time.perf_counter()
    with engines.launch(engine, models.SMOLLM2, log_path=out_dir / "engine.log", threads=engine_threads) as eng, \
            gateway.launch(eng.base_url, cfg, log_path=out_dir / "gateway.log", model_name=eng.model_name,
                           stream_window_chars=0, ready_timeout_s=ready_timeout_s) as gw:
        rows = send_trace(trace, eng, gw, cfg.block_message, cfg.hold_message, max_tokens)
        samples = gw.guard_metrics()
        escalations = gw.escalations()
        audit_path = gw.audit_path
    df = pd.DataFrame(rows)
    res = {"rows": df, "summary": summarize(df), "prometheus": pd.DataFrame(prometheus_rows(samples)),
           "escalations": escalations, "wall_s": time.perf_counter() - t0, "guard_config": cfg}
    # the counters and the audit log are two records of the same decisions: they must agree
    n_in = sum(v for (name, labels), v in samples.items() if name == "guard_requests_total" and ("stage", "input") in labels)
    audited = sum(1 for line in Path(audit_path).read_text().splitlines() if json.loads(line).get("stage") == "input")
    if int(n_in) != audited:
        raise LabError(f"guard service: guard_requests_total{{stage=input}} = {n_in}, audit log {audit_path} has "
                       f"{audited} input decisions")
    res["summary"]["input_decisions"] = audited
    return res
