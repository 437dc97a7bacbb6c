"""The support assistant end to end: a mixed trace through the guarded LiteLLM gateway in front of
llama.cpp + SmolLM2-135M-Instruct, against the bare engine on the same requests.

    from llmarch_lab.labs.guardrails import support
    trace = support.build_trace(60, seed=0)         # id, cls, source, text, reference
    out = support.study(run_dir, n=60)              # rows, summary, prometheus, escalations
    out["summary"]["per_class"]                     # block / hold / redact rates per class

The trace (trace.py): benign support questions (FiQA personal-finance questions with community
answers, TREC LiveQA consumer-health questions; data/support/), attacks (the label-1 prompts of
data/prompt_injections/train.parquet: the file the injection detector was fitted on, so their
block rate is optimistic), PII-bearing texts (data/pii/synth_dataset_v2.json) and toxic texts
(data/support/toxicity_sample.jsonl), shares MIX, seeded order; texts over MAX_CHARS are left out.

Each request goes to the bare engine and to the gateway, one at a time, non-streaming,
temperature 0; which side goes first alternates (llama.cpp reuses the previous prompt's prefix).
The outcome is read from the response (driver.outcome: block = content_filter or HTTP 400, hold
= the hold message of an escalation, answer) and the guard's decisions from the gateway's audit
log (driver.AuditTail: one request at a time, so the records since the last request are its
own). Added latency is the paired difference guarded - bare on requests whose input the guard
passed unchanged (the same prompt reached the model): the LiteLLM hop plus the guard's checks.
Answer quality on the benign questions with a reference: SQuAD token F1 and the MiniLM cosine
between answer and reference (quality.py), for the guarded and the bare answers. The guard
service's Prometheus counters (GET /metrics: guard_decisions_total{stage,check,action},
guard_requests_total{stage,action}) are read at the end and must agree with the audit log.

Modules: trace.py, quality.py, driver.py, study.py (each imports only those before it).
"""

from llmarch_lab.labs.guardrails.support.driver import OUTCOMES, AuditTail, ask, decisions, outcome
from llmarch_lab.labs.guardrails.support.quality import answer_tokens, minilm_cosine, token_f1
from llmarch_lab.labs.guardrails.support.study import COUNTERS, prometheus_rows, send_trace, study, summarize
from llmarch_lab.labs.guardrails.support.trace import CLASSES, MAX_CHARS, MIX, build_trace, counts, pools

__all__ = ["OUTCOMES", "AuditTail", "ask", "decisions", "outcome", "answer_tokens", "minilm_cosine", "token_f1",
           "COUNTERS", "prometheus_rows", "send_trace", "study", "summarize", "CLASSES", "MAX_CHARS", "MIX",
           "build_trace", "counts", "pools"]
