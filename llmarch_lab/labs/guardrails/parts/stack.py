"""Part `stack`: the whole input + output guard (stack.py) per request on one thread, with the
hash-chained audit log and the escalation queue as artifacts, and what the escalation band adds."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from llmarch_lab import LabError, paths
from llmarch_lab.assets import datasets
from llmarch_lab.common import stats
from llmarch_lab.labs.guardrails.parts.base import StackFields
from llmarch_lab.results import Result


class StackParams(StackFields):
    part: Literal["stack"] = "stack"
    stack_requests: int = Field(200, ge=10, le=5000, description="Requests timed through the whole stack.")


REPORT = ("guardrails stack: whole input + output guard per request, one thread", ["stack_detector", "stack_pii_config"], {
    "p50_ms": "latency.guard_ms_p50", "p95_ms": "latency.guard_ms_p95", "p99_ms": "latency.guard_ms_p99",
    "full_p95_ms": "latency.guard_full_ms_p95", "flagged": "count.stack_flagged_frac",
    "escalated": "count.escalation_rate", "esc_caught": "count.escalation_errors_caught",
    "audit_records": "count.audit_records"})


def _trace(p: StackParams):
    """(inputs, labels, sources, outputs): benign PubMedQA questions (label 0) and training-file
    prompts (their own 0/1 label) as inputs; PubMedQA expert answers as the outputs."""
    from llmarch_lab.labs.guardrails import injection

    pq = datasets.pubmedqa().sample(frac=1.0, random_state=p.seed)
    inj, _ = injection.training_file()
    inj = inj.sample(frac=1.0, random_state=p.seed)
    n, h = p.stack_requests, p.stack_requests // 2
    inputs = pq["question"].astype(str).tolist()[:h] + inj["text"].astype(str).tolist()[:n - h]
    labels = [0] * h + inj["label"].astype(int).tolist()[:n - h]
    sources = ["pubmedqa"] * h + ["prompt_injections"] * (n - h)
    outputs = (pq["long_answer"].astype(str).tolist() * 3)[:n]
    return inputs, labels, sources, outputs


def escalation_metrics(df) -> dict:
    """count.escalation_rate: share of requests escalated (input or output); errors caught: escalated
    requests labelled as attacks. The band lies below the block threshold, so the block-only
    policy lets every escalated request through; for an attack that is a false negative the
    band catches, for a benign request it is review work (`benign_escalated`)."""
    esc = df["escalated"].astype(bool)
    caught = int((esc & (df["label"] == 1)).sum())
    return {"count.escalation_rate": float(esc.mean()), "count.escalation_errors_caught": caught,
            "benign_escalated": int((esc & (df["label"] == 0)).sum()),
            "attacks_missed": int(((df["label"] == 1) & ~esc & (df["input_action"] != "block")).sum())}


def run(p: StackParams, res: Result) -> None:
    """The whole guard on real texts, one request at a time (the LLM's part is the serving lab's;
    this is what the guard adds per request). An input the guard stops (block, or an escalation
    held for review) gets no output check."""
    import pandas as pd

    from llmarch_lab.labs.guardrails import audit, policy, stack

    cfg = stack.default_config(injection_detector=p.stack_detector, pii_config=p.stack_pii_config)
    tmp = paths.cache_dir() / f"guardrails-audit-{int(time.time() * 1000)}.jsonl"
    log = audit.AuditLog(tmp, redactor=stack.pii_redactor(p.stack_pii_config))
    guard = policy.Guard(cfg, audit=log)
    inputs, labels, sources, outputs = _trace(p)
    guard.check_input("warm-up request: my name is John Smith")
    guard.check_output("warm-up answer.")
    rows = []
    for i, (q, a) in enumerate(zip(inputs, outputs)):
        t0 = time.perf_counter()
        din = guard.check_input(q)
        dout = guard.check_output(a) if guard.reply_for(din) is None else None
        total = (time.perf_counter() - t0) * 1000  # with the audit log's redaction and fsync'd appends
        checks = din.latency_ms + (dout.latency_ms if dout else 0.0)
        rows.append({"i": i, "source": sources[i], "label": labels[i], "input_action": din.action,
                     "output_action": dout.action if dout else "", "escalated": din.escalated or bool(dout and dout.escalated),
                     "band": ",".join(din.band + (dout.band if dout else [])), "input_ms": din.latency_ms,
                     "output_ms": dout.latency_ms if dout else 0.0, "checks_ms": checks, "with_audit_ms": total,
                     **{f"{r.name}_ms": r.latency_ms for r in din.checks + (dout.checks if dout else [])}})
    df = pd.DataFrame(rows)
    res.metrics.update(stats.percentiles(df["checks_ms"], "latency.guard_ms"))
    res.metrics.update(stats.percentiles(df["with_audit_ms"], "latency.guard_with_audit_ms"))
    res.metrics.update(stats.percentiles(df["input_ms"], "latency.guard_input_ms"))
    full = df[df["output_action"] != ""]  # requests that reached the output checks
    if len(full):
        res.metrics.update(stats.percentiles(full["checks_ms"], "latency.guard_full_ms"))
    res.add("count.stack_flagged_frac", float((df["input_action"] != "allow").mean()))
    esc = escalation_metrics(df)
    res.add("count.escalation_rate", esc["count.escalation_rate"])
    res.add("count.escalation_errors_caught", esc["count.escalation_errors_caught"])
    rep = audit.verify(tmp)
    if not rep.ok:
        raise LabError(f"audit log {tmp}: {rep.line(tmp)}")
    res.add("count.audit_records", rep.n_records)
    res.tables["stack_requests"] = df
    res.tables["escalations"] = guard.escalations.frame()
    res.tables["escalation_summary"] = pd.DataFrame([esc])
    res.texts["audit.jsonl"] = tmp.read_text()
    res.texts["guard_config.json"] = cfg.model_dump_json(indent=1)
    res.tags.update({"guardrails.stack_detector": p.stack_detector, "guardrails.stack_pii_config": p.stack_pii_config})
    tmp.unlink(missing_ok=True)
