"""Retrieval metrics from ranx (recall@k, MRR@10, nDCG@10), shared by the RAG lab and the
quantization lab's embedder target.

    from llmarch_lab.common import ir
    means, per_query = ir.ir_metrics(qrels, run, k=10)
    # qrels {qid: {doc_id: relevance}}, run {qid: {doc_id: score}}

nDCG uses the graded relevance in qrels with linear gain (ranx "ndcg", as trec_eval), so for
Cranfield grade 1 (complete answer, relevance 4) counts four times grade 4 (relevance 1).
Queries with no retrieved document still count (they score 0), so a retriever cannot gain by
returning nothing; queries with no relevant document are dropped (their metrics are undefined).
"""

from __future__ import annotations

from llmarch_lab import LabError

PLACEHOLDER = "__none__"  # ranx needs >= 1 entry per query: an unjudged id stands for "no result"


def metric_names(k: int) -> dict[str, str]:
    """ranx metric -> our schema name (quality.*)."""
    names = {"ndcg@10": "quality.ndcg_at_10", "mrr@10": "quality.mrr_at_10",
             "recall@10": "quality.recall_at_10", f"recall@{k}": f"quality.recall_at_{k}"}
    return names


def ir_metrics(qrels: dict, run: dict, k: int = 10):
    """(means {schema name: value}, per-query DataFrame(qid, metric columns)) over judged queries."""
    import pandas as pd
    from ranx import Qrels, Run, evaluate

    judged = {q: {d: int(r) for d, r in rels.items() if r > 0} for q, rels in qrels.items()}
    judged = {q: rels for q, rels in judged.items() if rels}
    if not judged:
        raise LabError("no query has a relevant document: nothing to score")
    missing = sorted(set(judged) - set(run))
    if missing:
        raise LabError(f"run has no entry for {len(missing)} judged queries (e.g. {missing[0]!r})")
    run = {q: (dict(run[q]) or {PLACEHOLDER: 0.0}) for q in judged}
    names = metric_names(k)
    ranx_metrics = list(names)
    ranx_run = Run(run)
    evaluate(Qrels(judged), ranx_run, ranx_metrics, make_comparable=True, save_results_in_run=True)
    qids = list(judged)  # per-query scores are read by id from the run, never by position
    table = pd.DataFrame({"qid": qids, **{names[m]: [float(ranx_run.scores[m][q]) for q in qids]
                                          for m in ranx_metrics}})
    means = {names[m]: float(table[names[m]].mean()) for m in ranx_metrics}
    return means, table
