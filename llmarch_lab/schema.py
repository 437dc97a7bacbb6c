"""Metric specs as data: every metric any lab logs, with its direction, unit and meaning.

    from llmarch_lab import schema
    schema.spec("latency.ttft_ms_p99")       # MetricSpec(direction='lower', unit='ms', ...)
    schema.direction("quality.ndcg_at_10")   # 'higher'
    schema.check("quality.colour")           # LabError: not declared in llmarch_lab/schema.py

A name's prefix says what it measures (the results schema); SPECS says, per metric or family,
whether higher or lower is better, so ranking, Pareto fronts and deltas across labs need no
per-lab code. A lab that logs a metric missing here fails (Result.add and LabRun.log_metrics
call `check`), so the table cannot drift from the code.

Patterns: `{n}` is a number (a k, a batch size), `{w}` one lower-case word with underscores.
`{pct}` expands to the shared percentile set (common.stats.PCTS: p50/p90/p95/p99) plus _mean.
A per-level series metric (serving: `latency.sweep.ttft_ms_p99`, step = level) has the spec of
the same name without `.sweep`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from llmarch_lab import LabError

PREFIXES = ("quality", "latency", "throughput", "memory", "cost", "errors", "count")

NAME_RE = re.compile(
    r"^(quality\.[a-z0-9_.]+"
    r"|latency\.[a-z0-9_.]+_(ms(_p\d{1,2}(\.\d+)?|_mean|_max|_min)?|s)"
    r"|throughput\.[a-z0-9_.]+"
    r"|memory\.[a-z0-9_.]+_mb"
    r"|cost\.[a-z0-9_.]+"
    r"|errors\.[a-z0-9_.]+"
    r"|count\.[a-z0-9_.]+)$"
)


@dataclass(frozen=True)
class MetricSpec:
    pattern: str
    direction: str  # "higher" | "lower" (is better) | "none" (a count or setting, not ranked)
    unit: str
    meaning: str


def _s(pattern: str, direction: str, unit: str, meaning: str) -> MetricSpec:
    return MetricSpec(pattern, direction, unit, meaning)


H, L, N = "higher", "lower", "none"
SPECS: tuple[MetricSpec, ...] = (
    # quality: how good the answers, rankings or predictions are
    _s("quality.perplexity", L, "", "WikiText-2 test perplexity (strided sliding window)"),
    _s("quality.ppl_delta_pct", L, "%", "perplexity change vs the fp32 run of the same settings"),
    _s("quality.ndcg_at_{n}", H, "", "nDCG@k, graded relevance, linear gain (ranx, as trec_eval)"),
    _s("quality.ndcg_delta_pct", H, "%", "nDCG@10 change vs the fp32 embedder (negative = loss)"),
    _s("quality.mrr_at_{n}", H, "", "mean reciprocal rank of the first relevant document within k"),
    _s("quality.recall_at_{n}", H, "", "share of relevant documents within the top k"),
    _s("quality.retrieval_hit_at_{n}", H, "", "share of queries whose own document is in the top k"),
    _s("quality.success_at_{n}", H, "", "share of queries with at least one relevant passage in the top k"),
    _s("quality.ragas.{w}", H, "", "ragas answer/context score in [0, 1] (non-LLM or LLM-judged)"),
    _s("quality.accuracy", H, "", "test accuracy of the headline predictions (calibrate choice)"),
    _s("quality.macro_f1", H, "", "test macro-F1 over yes/no/maybe (headline predictions)"),
    _s("quality.{w}_accuracy", H, "", "accuracy of one model or variant (raw, calibrated, zero-shot, majority, dev)"),
    _s("quality.{w}_macro_f1", H, "", "macro-F1 of one model or variant (raw, calibrated, zero-shot, majority, dev)"),
    _s("quality.{w}_gain_vs_{w}_ci95_low", H, "", "lower end of the paired-bootstrap 95% interval of a gain"),
    _s("quality.{w}_gain_vs_{w}_ci95_high", H, "", "upper end of the paired-bootstrap 95% interval of a gain"),
    _s("quality.train_loss", L, "nats/token", "training loss on completion tokens"),
    _s("quality.eval_loss", L, "nats/token", "dev loss on completion tokens"),
    _s("quality.final_train_loss", L, "nats/token", "last logged training loss"),
    _s("quality.best_eval_loss", L, "nats/token", "lowest dev loss during training"),
    _s("quality.fidelity_worst_error_pct", L, "%", "a load generator's worst |error| against server-recorded truth over all levels and metrics (benchmarks/serving_fidelity.py)"),
    _s("quality.slo_attainment", H, "fraction", "share of requests meeting the TTFT and TPOT SLOs"),
    # guardrails
    _s("quality.{w}_precision", H, "", "precision of a guardrail check (pii span-level, injection, toxicity)"),
    _s("quality.{w}_recall", H, "", "recall of a guardrail check (pii span-level, injection, toxicity)"),
    _s("quality.{w}_f1", H, "", "F1 of a guardrail check"),
    _s("quality.{w}_f2", H, "", "F2 (recall weighted 2x, presidio-evaluator's convention) of PII detection"),
    _s("quality.{w}_auc", H, "", "ROC-AUC of a guardrail score (out-of-fold for trained detectors)"),
    _s("quality.{w}_valid_rate", H, "fraction", "share of structured answers that parse and validate"),
    _s("quality.{w}_field_accuracy", H, "fraction", "share of structured answers whose field matches the label"),
    _s("quality.attack_success_rate_{w}", L, "fraction", "garak: share of attack attempts that succeeded"),
    _s("errors.{w}_fpr", L, "fraction", "false-positive rate on benign texts (a guard blocking what it should not)"),
    _s("errors.benign_false_block_rate", L, "fraction", "share of benign requests the guarded gateway blocked"),
    _s("count.{w}_escalated_frac", N, "fraction", "share of texts a cascade sent to its expensive stage"),
    _s("count.{w}_extra_tokens", N, "tokens", "completion tokens per item beyond plain prompting"),
    _s("count.{w}_retries_mean", N, "retries", "re-asks per item (validate + re-ask)"),
    _s("count.{w}_flagged_frac", N, "fraction", "share of texts a check flagged"),
    _s("quality.stack_{w}_accuracy_ci95_{w}", H, "", "system: end of an item-bootstrap 95% interval of a task's accuracy measured through the running stack"),
    _s("count.stack_{w}_held_frac", N, "fraction", "system: share of quality items the running stack's guard answered itself (held or blocked; scored wrong)"),
    _s("count.audit_records", N, "records", "decisions appended to the audit log (hash-chained)"),
    _s("count.outside_threshold", N, "", "guardrails outside part: the detector's shipped threshold"),
    _s("count.escalation_rate", N, "fraction", "share of requests the guard escalated to a human"),
    _s("count.escalation_errors_caught", N, "requests", "escalated attacks the block-only policy would have let through"),
    _s("count.support_{w}_redacted_frac", N, "fraction", "support trace: share of a class's requests whose input or answer the guard redacted"),
    _s("quality.{w}_answer_cosine", H, "", "mean MiniLM cosine between an answer and its reference answer"),
    _s("quality.bbq_acc_{w}", H, "%", "BBQ accuracy, ambiguous / disambiguated contexts (_lo/_hi: 95% bootstrap ends)"),
    _s("quality.bbq_bias_{w}", N, "", "BBQ bias score x100 (Parrish et al. 2022): 0 = none, + = stereotype-aligned"),
    _s("quality.crows_stereo_pref", N, "%", "CrowS-Pairs: % of pairs whose more stereotypical sentence is likelier (50 = none)"),
    _s("quality.crows_stereo_pref_{w}", N, "%", "CrowS-Pairs stereotype preference, 95% bootstrap interval end"),
    _s("quality.stereoset_ss", N, "%", "StereoSet stereotype score (50 = no preference)"),
    _s("quality.stereoset_ss_{w}", N, "%", "StereoSet SS, 95% bootstrap interval end"),
    _s("quality.stereoset_lms", H, "%", "StereoSet language-modeling score"),
    _s("quality.stereoset_lms_{w}", H, "%", "StereoSet LMS, 95% bootstrap interval end"),
    _s("quality.stereoset_icat", H, "", "StereoSet ICAT = LMS min(SS, 100 - SS) / 50"),
    _s("quality.stereoset_icat_{w}", H, "", "StereoSet ICAT, 95% bootstrap interval end"),
    _s("quality.bbq_mitigation_delta_{w}", N, "points", "BBQ metric with the debiasing prefix minus without (held-out half)"),
    _s("quality.halluc_acc", H, "", "hallucination detector: test accuracy at the dev half's threshold"),
    _s("quality.halluc_{w}_ci95_{w}", H, "", "hallucination detector: end of an item-bootstrap 95% interval (acc, auc)"),
    _s("errors.pii_gold_leak_rate", L, "fraction", "PII: share of gold PII values still found verbatim (any whitespace) in the redacted text"),
    _s("errors.pii_gold_leaks", L, "spans", "PII: gold values still found verbatim in the redacted text"),
    _s("errors.pii_detected_leaks", L, "spans", "PII: detected values still found verbatim in the redacted text (0 unless redaction is broken)"),
    _s("count.pii_gold_spans", N, "spans", "PII: gold spans in the scored split"),
    # cost lab: routing (RouteLLM's evaluation), semantic cache, the plan
    _s("quality.apgr_{w}", H, "", "APGR of a router: average performance gap recovered over large-model shares 0..1 (RouteLLM)"),
    _s("cost.large_share_at_{n}pct_gap_{w}", L, "fraction", "share of calls a router sends to the large model to recover n% of the quality gap (RouteLLM's CPT)"),
    _s("cost.saving_pct_at_{n}pct_gap_{w}", H, "%", "cost saved vs always-large at n% of the quality gap (a cascade pays every small call)"),
    _s("cost.saving_ratio_vs_random_at_{n}pct_gap_{w}", H, "x", "random's large-model share / the router's, at n% of the gap (RouteLLM's cost-saving ratio)"),
    _s("quality.{w}_hit_rate", H, "fraction", "semantic cache: correct hits / duplicate queries"),
    _s("quality.{w}_hit_rate_at_{n}pm_wrong", H, "fraction", "semantic cache: best hit rate at a wrong-hit rate <= n per mille (label-aware, out-of-fold)"),
    _s("errors.{w}_wrong_hit_rate", L, "fraction", "semantic cache: hits that served another question's entry / all queries"),
    _s("cost.large_calls_saved_share", H, "fraction", "share of requests the cache answered (no model call)"),
    _s("cost.{w}_usd_per_1m_{w}_tokens", L, "USD", "a model's $ per 1M input or output tokens from its measured speed and the machine's $/hour"),
    _s("cost.plan_saving_pct", H, "%", "cost saving of the recommended plan vs always-large, no cache, online"),
    _s("quality.plan_relative_loss_pct", L, "%", "relative quality loss of the recommended plan (negative = a gain)"),
    _s("quality.plan_relative_loss_pct_ci95_{w}", L, "%", "paired-bootstrap 95% interval end of the plan's relative quality loss"),
    _s("cost.plan_saving_pct_ci95_{w}", H, "%", "paired-bootstrap 95% interval end of the plan's cost saving"),
    _s("cost.{w}_machine_s_per_request", L, "s", "cost scenario: machine-seconds per request, replayed or as the plan predicts it"),
    _s("errors.replay_{w}_vs_plan_pct", L, "%", "cost scenario: the replay's cost or quality relative to the plan's prediction (signed)"),
    _s("quality.replay_quality", H, "fraction", "cost scenario: mean correctness of the replayed requests"),
    _s("quality.plan_predicted_quality", H, "fraction", "cost scenario: the plan's predicted mean correctness on the replayed requests"),
    _s("latency.compressor_{w}_ms", L, "ms", "cost scenario: Selective Context compression of one abstract at a ratio (SmolLM2, CPU)"),
    _s("count.scenario_configs", N, "configurations", "cost scenario: configurations measured on the whole sample"),
    _s("latency.cache_lookup_ms", L, "ms", "semantic cache: mean time per request of lookups and inserts on the plan's trace"),
    _s("cost.saving_pct_{w}", H, "%", "cost saving of one lever or lever combination vs the baseline"),
    _s("quality.relative_loss_pct_{w}", L, "%", "relative quality loss of one lever or lever combination"),
    _s("count.{w}_large_share", N, "fraction", "share of requests routed to the large model"),
    _s("count.{w}_questions", N, "questions", "questions measured for one task"),
    _s("count.questions", N, "questions", "questions measured (all tasks)"),
    _s("count.trace_requests", N, "requests", "requests in the plan's trace (at most questions / (1 - repeat rate))"),
    _s("errors.{w}_error_rate", L, "fraction", "share of requests that failed on one path (gateway)"),
    _s("errors.{w}_decision_disagreement", L, "fraction", "share of requests the gateway routed differently from the in-process router"),
    _s("errors.large_share_abs_diff", L, "fraction", "|gateway large-model share - the router's offline share| on the same prompts"),
    # system chooser (llmarch_lab/system): the recommended system and its end-to-end check
    _s("cost.{w}_usd_per_month", L, "USD", "what a system costs per month, sized for its peak load"),
    _s("count.system_{w}", N, "", "system report: candidates, feasible candidates, replicas, failed bundle checks"),
    _s("errors.verify_{w}_abs_error_pct", L, "%", "end-to-end check: |measured - predicted| / predicted of one metric"),
    _s("latency.alert_{w}_s", L, "s", "alert drill: fault start -> the alert's firing notification at the webhook "
       "(alert_<name>_fire_s); fault end -> its resolved one (alert_<name>_resolve_s)"),
    _s("count.drill_{w}", N, "", "alert drill: alerts expected, fired, missed, fired unexpectedly, in the quiet baseline"),
    _s("throughput.balance_{w}_req_per_s", H, "1/s", "LiteLLM Router over engine replicas: requests/s of one scenario (benchmarks/system_balance.py)"),
    _s("latency.balance_{w}_e2e_ms_p99", L, "ms", "LiteLLM Router over engine replicas: e2e p99 of one scenario"),
    _s("count.balance_{w}_failed", L, "", "LiteLLM Router over engine replicas: failed requests in one scenario"),
    _s("throughput.ratelimit_{w}_goodput_req_per_s", H, "1/s", "gateway rate limits: admitted requests/s of one scenario (benchmarks/system_ratelimit.py)"),
    _s("latency.ratelimit_{w}_ttft_ms_p99", L, "ms", "gateway rate limits: TTFT p99 of the admitted requests of one scenario"),
    _s("count.ratelimit_{w}", N, "", "gateway rate limits: requests answered 429 or 5xx in one scenario; fuzz bodies answered 5xx"),
    _s("errors.autoscale_{w}_late_share", L, "fraction", "autoscaling simulation: share of requests queued past the SLO's budget"),
    _s("cost.drill_spend_usd", N, "USD", "alert drill: the gateway's spend counter at the end, read from Prometheus"),
    # latency: whole phases in seconds, per-item times in ms with the shared percentile set
    _s("latency.{w}_s", L, "s", "wall time of one phase (load, build, train, run)"),
    _s("latency.{w}_ms{pct}", L, "ms", "per-item time (request, token, query, generate call)"),
    # throughput: per second, higher is better
    _s("throughput.{w}_per_s", H, "1/s", "items (tokens, requests, documents, chunks) per second"),
    _s("throughput.decode_tok_per_s_b{n}", H, "tok/s", "greedy decode tokens per second at batch size n"),
    _s("throughput.copy_bandwidth_gb_per_s", H, "GB/s", "STREAM-copy memory bandwidth of the machine"),
    _s("count.engine_{w}", N, "", "what a serving engine's /metrics said during a level: queue/running mean and max, KV-cache usage max, preemptions, token counts, prefix-cache hit rate, speculative acceptance rate, tokens per decode call"),
    _s("throughput.roofline_efficiency", H, "fraction", "single-stream decode rate / bandwidth roofline"),
    _s("throughput.matmul_gflops", H, "GFLOP/s", "fp32 matrix-multiply rate of the machine at a model's shapes (torch GEMM)"),
    _s("throughput.{w}_speedup_b{n}", H, "x", "decode speed-up of a speculative-decoding mode (draft, ngram) over none at n concurrent requests"),
    _s("throughput.max_speedup_vs_level1", H, "x", "best throughput over the single-stream level"),
    # memory, cost
    _s("memory.{w}_mb", L, "MB", "memory: weights, peak RSS, peak GPU, index on disk"),
    _s("cost.usd_per_1m_output_tokens", L, "USD", "machine $/hour spread over measured output tokens"),
    # errors: rates and disagreements, lower is better
    _s("errors.error_rate", L, "fraction", "share of requests that failed (operating level)"),
    _s("errors.error_rate_all_levels", L, "fraction", "share of requests that failed over the sweep"),
    _s("errors.max_abs_{w}_diff_pct", L, "%", "largest disagreement with a reference tool"),
    # count: counters and chosen settings; logged for the record, never ranked
    _s("count.malformed_chunks", N, "chunks", "stream chunks that were not valid JSON (skipped)"),
    _s("count.judge_failures", N, "judgements", "LLM-judge calls that failed or gave no score"),
    _s("count.judge_judgements", N, "judgements", "LLM-judge calls attempted"),
    _s("count.best_step", N, "step", "optimizer step of the restored checkpoint"),
    _s("count.gate_{w}", N, "rows", "data quality gate findings (duplicates, leaks, over-length)"),
)

_PCT = r"(_p(50|90|95|99)|_mean)"


def _compile(pattern: str) -> re.Pattern:
    rx = re.escape(pattern).replace(r"\{n\}", r"\d+").replace(r"\{w\}", r"[a-z0-9_]+?")
    rx = rx.replace(r"\{pct\}", _PCT + "?")
    return re.compile(f"^{rx}$")


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[re.Pattern, MetricSpec], ...]:
    return tuple((_compile(s.pattern), s) for s in SPECS)


@functools.lru_cache(maxsize=4096)
def spec(name: str) -> MetricSpec | None:
    """The spec of a metric name (exact entries win over families), or None if undeclared."""
    base = name.replace(".sweep.", ".", 1)
    matches = [s for rx, s in _compiled() if rx.match(base)]
    if not matches:
        return None
    exact = [s for s in matches if "{" not in s.pattern]
    return (exact or matches)[0]


def check(name: str) -> MetricSpec:
    """The spec of `name`; a LabError naming the metric when it is off-schema or undeclared."""
    if not NAME_RE.match(name):
        raise LabError(f"metric {name!r} is outside the results schema: use quality.*, "
                       "latency.*_ms[_pNN] or latency.*_s, throughput.*, memory.*_mb, cost.*, errors.*, count.*")
    s = spec(name)
    if s is None:
        raise LabError(f"metric {name!r} is not declared in llmarch_lab/schema.py SPECS "
                       "(add its direction, unit and meaning there)")
    return s


def direction(name: str) -> str:
    """'higher', 'lower' or 'none' for a declared metric (LabError otherwise)."""
    return check(name).direction


def table():
    """SPECS as a DataFrame (pattern, direction, unit, meaning), for docs and `llmarch-lab list`."""
    import pandas as pd

    return pd.DataFrame([s.__dict__ for s in SPECS])


def declare(*specs: MetricSpec) -> None:
    """Add specs for a lab that lives outside this package (e.g. a test or plugin lab)."""
    global SPECS
    SPECS = SPECS + tuple(specs)
    _compiled.cache_clear()
    spec.cache_clear()
