"""The RAG lab's suite table: one row per finished run, and how sure each gap to the best
retriever is (paired bootstrap over the same queries).

    from llmarch_lab.labs.rag.report import report
    report("rag").print()

For every corpus the run with the best nDCG@10 is the reference; every other run on the same
corpus and query set gets ndcg_vs_best = its nDCG@10 minus the best one's, with a 95%
percentile-bootstrap interval resampling queries (common.stats.paired_bootstrap over the runs'
per-query tables). An interval that holds 0 means these queries cannot tell the two apart.
"""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.common import stats
from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store import tracking
from llmarch_lab.store.tables import runs_table

SETTINGS = ["corpus", "mode", "fusion", "linear_weight", "chunking", "reranker", "n_docs", "n_queries"]
METRICS = {"ndcg_at_10": "quality.ndcg_at_10", "recall_at_10": "quality.recall_at_10",
           "mrr_at_10": "quality.mrr_at_10", "query_ms_p50": "latency.query_ms_p50",
           "query_ms_p95": "latency.query_ms_p95", "index_disk_mb": "memory.index_disk_mb"}


def _per_query(run_id: str):
    return tracking.load_table(run_id, "queries").set_index("qid")["quality.ndcg_at_10"]


def gaps_to_best(df, n_resamples: int = 2000):
    """Adds ndcg_vs_best, its ci95 bounds and `clear` (the interval excludes 0) per run."""
    df = df.copy()
    for col in ("ndcg_vs_best", "ci95_low", "ci95_high"):
        df[col] = float("nan")
    df["clear"] = None
    for _, group in df.dropna(subset=["ndcg_at_10"]).groupby(["corpus", "n_docs", "n_queries"]):
        best = group.ndcg_at_10.idxmax()
        try:
            ref = _per_query(df.run_id[best])
        except LabError:
            continue
        for i in group.index:
            if i == best:
                continue
            try:
                q = _per_query(df.run_id[i])
            except LabError:
                continue
            common = ref.index.intersection(q.index)
            if len(common) < 2:
                continue
            r = stats.paired_bootstrap(stats.mean_difference, q.loc[common].to_numpy(), ref.loc[common].to_numpy(),
                                       n_resamples=n_resamples)
            df.loc[i, ["ndcg_vs_best", "ci95_low", "ci95_high"]] = r["delta"], r["ci_low"], r["ci_high"]
            df.loc[i, "clear"] = r["clear"]
    return df


def report(suite: str) -> Report:
    df = runs_table(suite, "rag", SETTINGS, METRICS)
    if len(df):
        df = gaps_to_best(df).sort_values(["corpus", "ndcg_at_10"], ascending=[True, False]).reset_index(drop=True)
    notes = ["ndcg_vs_best: nDCG@10 minus the corpus's best run, 95% paired-bootstrap interval over queries; "
             "clear = the interval excludes 0"]
    return Report(f"retrieval runs of suite {suite}", df, directions_for(METRICS), notes=notes)
