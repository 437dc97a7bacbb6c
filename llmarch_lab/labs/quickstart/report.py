"""The quickstart lab's suite table: one row per run, its headline numbers.

    from llmarch_lab.labs.quickstart.report import report
    report("quickstart").print()
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store.tables import runs_table

METRICS = {"decode_tok_per_s": "throughput.decode_tok_per_s", "generate_ms_p50": "latency.generate_ms_p50",
           "retrieval_hit_at_1": "quality.retrieval_hit_at_1", "query_ms_p50": "latency.query_ms_p50",
           "query_ms_p95": "latency.query_ms_p95", "docs_per_s": "throughput.docs_per_s",
           "llm_load_s": "latency.llm_load_s"}


def report(suite: str) -> Report:
    table = runs_table(suite, "quickstart", ["model", "embedder", "device", "n_docs"], METRICS)
    return Report(f"quickstart runs of suite {suite}", table, directions_for(METRICS))
