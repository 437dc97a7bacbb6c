"""The guardrails lab's suite tables, one per part that ran: PII configurations, injection
detectors (with the latency vs F1 Pareto plot), toxicity, output-validation strategies, the whole
stack's latency, and the guarded gateway under garak.

    from llmarch_lab.labs.guardrails.report import report
    for rep in report("guardrails"): rep.print()
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store.tables import runs_table

PII = {"P": "quality.pii_precision", "R": "quality.pii_recall", "F2": "quality.pii_f2",
       "p50_ms": "latency.pii_ms_p50", "p95_ms": "latency.pii_ms_p95"}
INJECTION = {"P": "quality.injection_precision", "R": "quality.injection_recall", "F1": "quality.injection_f1",
             "AUC": "quality.injection_auc", "benign_FPR": "errors.injection_fpr",
             "p50_ms": "latency.injection_ms_p50", "p95_ms": "latency.injection_ms_p95",
             "escalated": "count.injection_escalated_frac"}
TOXICITY = {"P": "quality.toxicity_precision", "R": "quality.toxicity_recall", "F1": "quality.toxicity_f1",
            "AUC": "quality.toxicity_auc", "FPR": "errors.toxicity_fpr", "benign_FPR": "errors.toxicity_benign_fpr",
            "p50_ms": "latency.toxicity_ms_p50", "p95_ms": "latency.toxicity_ms_p95"}
STRATEGIES = ("plain", "reask", "constrained")
VALIDATION = {f"{s}_{k}": m for s in STRATEGIES for k, m in (
    ("valid", f"quality.{s}_valid_rate"), ("acc", f"quality.{s}_field_accuracy"),
    ("p95_ms", f"latency.validation_{s}_ms_p95"))}
VALIDATION.update({"grounded_auc": "quality.groundedness_embedding_random_auc",
                   "grounded_acc": "quality.groundedness_embedding_random_accuracy"})
STACK = {"p50_ms": "latency.guard_ms_p50", "p95_ms": "latency.guard_ms_p95", "p99_ms": "latency.guard_ms_p99",
         "full_p95_ms": "latency.guard_full_ms_p95", "flagged": "count.stack_flagged_frac",
         "audit_records": "count.audit_records"}
GATEWAY = {"ASR_bare": "quality.attack_success_rate_bare", "ASR_guarded": "quality.attack_success_rate_guarded",
           "benign_false_block": "errors.benign_false_block_rate",
           "added_ttft_p50_ms": "latency.gateway_added_ttft_ms_p50",
           "added_ttft_p99_ms": "latency.gateway_added_ttft_ms_p99"}

PARTS = {  # part -> (title, settings shown, metric columns)
    "pii": ("guardrails pii: Presidio span-level, test split", ["pii_config", "pii_threshold"], PII),
    "injection": ("guardrails injection: deepset train, out-of-fold for trained detectors",
                  ["detector"], INJECTION),
    "toxicity": ("guardrails toxicity: alt-profanity-check", ["toxicity_file"], TOXICITY),
    "validation": ("guardrails validation: structured output on llama.cpp + SmolLM2, groundedness", [], VALIDATION),
    "stack": ("guardrails stack: whole input + output guard per request, one thread", ["stack_detector", "stack_pii_config"], STACK),
    "gateway": ("guardrails gateway: LiteLLM proxy with the guard, attacked by garak", ["stack_detector", "garak_cap"],
                GATEWAY),
}


def report(suite: str) -> list[Report]:
    out = []
    for part, (title, settings, metrics) in PARTS.items():
        df = runs_table(suite, "guardrails", ["part", *settings], metrics)
        df = df[df["part"] == part].drop(columns=["part"]) if len(df) else df
        if df.empty:
            continue
        df = df.dropna(axis=1, how="all")
        if "pii_threshold" in df:  # a None parameter is logged as JSON null: the configuration's own
            df["pii_threshold"] = df["pii_threshold"].replace({"null": "(config's)", None: "(config's)"})
        name, _, what = title.partition(": ")
        rep = Report(f"{name} of suite {suite} ({what})", df.reset_index(drop=True), directions=directions_for(
            {c: m for c, m in metrics.items() if c in df}))
        if part == "injection" and {"p95_ms", "F1"} <= set(df.columns) and len(df) > 1:
            from llmarch_lab.labs.guardrails import plots

            rep.figures["injection_latency_vs_f1"] = plots.latency_vs_quality(
                df, "p95_ms", "F1", "detector", "injection: p95 latency vs F1 (Pareto ringed)")
        out.append(rep)
    return out
