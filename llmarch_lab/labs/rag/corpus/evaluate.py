"""Relevance on the corpus: exact dense retrieval and BM25 over every passage, per judged task.

    from llmarch_lab.labs.rag.corpus import evaluate, files
    c = files.load("full")
    q = evaluate.sample(c, split="dev", per_task=500)
    runs = {"dense minilm-l6 (exact)": evaluate.dense_run(c, q, "minilm-l6"), "bm25s": evaluate.bm25_run(c, q)}
    evaluate.table(c, q, runs)      # task x retriever: nDCG@10, MRR@10, recall@10/100, success@10

Exact dense search is the reference every ANN store is held to (recall@10 against it): a
block-wise matrix product over the normalised passage matrix, top-k kept with argpartition.
BM25 is the lab's peer (bm25s, Lucene BM25, PyStemmer, English stop words) on the same passage
text the embedders see. success@10 is the share of queries with a relevant passage in the top 10
("95%+ relevance" stated precisely). Metrics come from common/ir (ranx).
"""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.common import ir
from llmarch_lab.labs.rag.corpus import vectors

BLOCK = 65_536  # passage rows per matrix product: ~100 MB of float32 at 384 dims


def sample(corpus, split: str = "dev", per_task: int = 500, seed: int = 0):
    """Up to `per_task` queries of each task from one split (a seeded draw, in qid order)."""
    q = corpus.queries[corpus.queries.split == split]
    if q.empty:
        raise LabError(f"split {split!r}: no queries (valid: train, dev, test)")
    parts = [g.sample(min(per_task, len(g)), random_state=seed) for _, g in q.groupby("task")]
    import pandas as pd

    return pd.concat(parts).reset_index(drop=True)


def exact_topk(mat, qv, k: int = 100):
    """(indices, scores) of the k largest inner products of each query row, over all of `mat`."""
    import numpy as np

    n = mat.shape[0]
    k = min(k, n)
    best_i = np.empty((len(qv), 0), dtype=np.int64)
    best_s = np.empty((len(qv), 0), dtype=np.float32)
    for s in range(0, n, BLOCK):
        block = np.asarray(mat[s:s + BLOCK], dtype=np.float32)
        sc = qv @ block.T
        kk = min(k, sc.shape[1])
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        best_i = np.concatenate([best_i, part + s], axis=1)
        best_s = np.concatenate([best_s, np.take_along_axis(sc, part, axis=1)], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_i, best_s = np.take_along_axis(best_i, keep, axis=1), np.take_along_axis(best_s, keep, axis=1)
    return best_i, best_s


def dense_run(corpus, queries, spec: str = "minilm-l6", k: int = 100) -> dict:
    """Exact dense retrieval over the corpus's built matrix for `spec` (queries embedded now)."""
    mat = vectors.load(corpus, spec)
    with vectors.embedder(spec, queries=True) as emb:
        qv = emb.embed(queries.text.tolist(), progress=False)
    return matrix_run(corpus, queries, mat, qv, k)


def matrix_run(corpus, queries, mat, qv, k: int = 100) -> dict:
    """qid -> {pid: score} of the exact top k for query vectors `qv` over passage rows `mat`."""
    idx, sc = exact_topk(mat, qv, k)
    pids = corpus.passages.pid.to_numpy()
    return {q: {pids[i]: float(s) for i, s in zip(row_i, row_s)} for q, row_i, row_s in zip(queries.qid, idx, sc)}


def bm25_run(corpus, queries, k: int = 100, index=None) -> dict:
    """BM25 over every passage (bm25s; build the index once and pass it to score several samples)."""
    import bm25s

    model, stemmer = index or bm25_index(corpus)
    qtok = bm25s.tokenize(queries.text.tolist(), stopwords="en", stemmer=stemmer, show_progress=False)
    idx, sc = model.retrieve(qtok, k=k, show_progress=False, n_threads=2)
    pids = corpus.passages.pid.to_numpy()
    return {q: {pids[i]: float(s) for i, s in zip(row_i, row_s) if s > 0}
            for q, row_i, row_s in zip(queries.qid, idx, sc)}


def bm25_index(corpus):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(vectors.texts(corpus), stopwords="en", stemmer=stemmer, show_progress=True)
    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index(tokens, show_progress=True)
    return model, stemmer


def fuse(runs: list[dict], k: int = 100, rrf_k: int = 60) -> dict:
    """Reciprocal rank fusion of several runs (ranx.fuse), the top k of each query kept: the
    lab's own hybrid for stores without a native BM25 + dense query."""
    from ranx import Run
    from ranx import fuse as ranx_fuse

    qids = set().union(*runs)
    fused = ranx_fuse([Run({q: (r.get(q) or {ir.PLACEHOLDER: 0.0}) for q in qids}) for r in runs],
                      method="rrf", params={"k": rrf_k}).to_dict()
    return {q: dict(sorted(((p, s) for p, s in d.items() if p != ir.PLACEHOLDER), key=lambda x: -x[1])[:k])
            for q, d in fused.items()}


def table(queries, runs: dict, k: int = 100):
    """One row per (task, retriever): the ir metrics and success@10, with each query counted once."""
    import pandas as pd

    rows = []
    for name, run in runs.items():
        for task, q in queries.groupby("task"):
            qrels = {qid: {p: 1 for p in rel} for qid, rel in zip(q.qid, q.relevant)}
            means, per = ir.ir_metrics(qrels, {qid: run.get(qid, {}) for qid in q.qid}, k=k)
            hit = [any(p in qrels[qid] for p in sorted(run.get(qid, {}), key=lambda p: -run[qid][p])[:10])
                   for qid in q.qid]
            rows.append({"task": task, "retriever": name, "queries": len(q),
                         **{m.replace("quality.", ""): v for m, v in means.items()},
                         "success_at_10": sum(hit) / len(hit)})
    return pd.DataFrame(rows)
