"""The seed's first scenario, measured: a retrieval system over the 500k-passage corpus, query by
query, with relevance per task against BM25 (notebook 31_rag_500k, lab `rag_scenario`).

    llmarch-lab run experiments/rag_500k.yaml                  # the full corpus (vectors: `corpus embed`)
    .venv/bin/python benchmarks/rag_scenario.py --store qdrant --setting hnsw_ef=64
    from llmarch_lab.labs.rag.corpus.scenario import ScenarioParams, run
    result = run(ScenarioParams(which="slice", store="lancedb", setting="nprobes=20,refine_factor=10"))

One run = one store at one search setting (the one benchmarks/rag_stores.py chose on dev
queries: recall@10 >= 0.95 against exact search). The store is built from the corpus's MiniLM
vectors (built here, resumably, when missing), then every sampled test query runs alone,
end to end: query embedding (MiniLM through the ONNX query encoder) + ANN search (+ the
cross-encoder reranking the top `rerank_k`), at each thread count in `threads` (ONNX Runtime's
and torch's intra-op threads; the stores search single-threaded). The relevance table puts BM25
(bm25s over every passage), the store's dense and hybrid answers and the reranked pipeline side
by side per task: nDCG@10, MRR@10, recall@10 and success@10 (the share of queries with a
relevant passage in the top 10: "95%+ relevance" stated as a fraction of queries). The store
returns max(10, rerank_k) passages per query, so recall@100 is not measured here (exact dense
and BM25 recall@100 at 500k: benchmarks/rag_corpus.py).
"""

from __future__ import annotations

import shutil
import time
from typing import Literal

from pydantic import Field

from llmarch_lab import LabError, paths
from llmarch_lab.common import stats
from llmarch_lab.config import LabParams
from llmarch_lab.labs.rag.corpus import evaluate, files, rerank, vectors
from llmarch_lab.results import Result

STAGES = ("embed", "search", "rerank", "total")


class ScenarioParams(LabParams):
    lab = "rag_scenario"
    key_metrics = ("quality.ndcg_at_10", "quality.success_at_10", "latency.total_ms_p99", "latency.total_rerank_ms_p99")

    which: Literal["full", "slice"] = Field("full", description="full (513k passages; `make rag-corpus`) or slice (the tests' 4k).")
    store: Literal["lancedb", "qdrant", "pgvector"] = Field("qdrant", description="Vector store (stores/): lancedb (IVF-PQ), qdrant (HNSW, in-process), pgvector (HNSW in PostgreSQL).")
    setting: str = Field("hnsw_ef=64", description="The store's search setting, key=value[,key=value] (benchmarks/rag_stores.py's choice on dev).")
    per_task: int = Field(200, ge=1, le=10000, description="Test queries per task (quora, boolq, halueval-qa), a seeded draw.")
    rerank_k: int = Field(20, ge=0, le=100, description="Candidates the trained MiniLM cross-encoder reranks (0 = no reranking).")
    train_queries: int = Field(1500, ge=3, description="Train-split queries the cross-encoder learns from (cached by data and settings).")
    threads: str = Field("1,2", pattern=r"^\d+(,\d+)*$", description="Thread counts to measure, comma-separated.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="Passage embedding precision when the vectors must be built (auto: bf16 on a CPU with native bf16).")


def parse_setting(text: str) -> dict:
    """'hnsw_ef=64,x=y' -> {'hnsw_ef': 64, 'x': 'y'}; a bad pair is a LabError naming it."""
    out = {}
    for part in [p for p in text.split(",") if p.strip()]:
        k, _, v = part.strip().partition("=")
        if not k or not v:
            raise LabError(f"setting {text!r}: give key=value pairs, e.g. hnsw_ef=64")
        out[k] = int(v) if v.isdigit() else v
    return out


def corpus_vectors(c, precision: str = "auto"):
    """MiniLM's passage matrix, built (resumably) when missing; float32 in memory."""
    import numpy as np

    try:
        return np.array(vectors.load(c, "minilm-l6"))
    except LabError:
        return vectors.build(c, "minilm-l6", precision=vectors.precision(precision))


def cross_encoder(c, train_queries: int, index):
    from sentence_transformers.cross_encoder import CrossEncoder

    return CrossEncoder(str(rerank.train_cross_encoder(rerank.training_pairs(c, index, train_queries))), device="cpu")


def pipeline(c, store, setting: dict, q, threads: int, ce=None, rerank_k: int = 0, k: int = 10):
    """Each query alone: embed + search (+ rerank). (run, {stage: [ms per query]})."""
    import numpy as np
    import torch

    from llmarch_lab.llm.embeddings import Embedder

    torch.set_num_threads(threads)
    emb = Embedder("minilm-l6", query_encoder="onnx", query_threads=threads)
    emb.prepare_query_encoder()
    pids, texts = c.passages.pid.to_numpy(), vectors.texts(c)
    run, ms = {}, {s: [] for s in STAGES}
    for qid, text in zip(q.qid, q.text):
        t0 = time.perf_counter()
        qv = np.asarray(emb.embed_query(text), dtype=np.float32)
        t1 = time.perf_counter()
        rows = store.search(qv, max(k, rerank_k), setting)
        t2 = time.perf_counter()
        if ce is not None and rerank_k:
            scores = ce.predict([(text, texts[r]) for r in rows[:rerank_k]], batch_size=32, show_progress_bar=False)
            rows = [rows[i] for i in np.argsort(-np.asarray(scores), kind="stable")] + rows[rerank_k:]
        t3 = time.perf_counter()
        run[qid] = {pids[r]: float(len(rows) - i) for i, r in enumerate(rows)}
        for s, v in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            ms[s].append(v * 1000)
    return run, ms


def hybrid_run(c, store, setting: dict, q) -> dict:
    """The store's own BM25 + dense answer per query (top 10; query vectors from MiniLM)."""
    from llmarch_lab.llm.embeddings import Embedder

    pids = c.passages.pid.to_numpy()
    qv = Embedder("minilm-l6").embed(q.text.tolist(), progress=False)
    return {qid: {pids[r]: float(10 - i) for i, r in enumerate(store.hybrid(v, text, 10, setting))}
            for qid, text, v in zip(q.qid, q.text, qv)}


def measure(c, store, setting: dict, q, thread_counts, ce, rerank_k: int):
    """The pipeline rows (threads x with/without reranking) and the runs kept for relevance."""
    rows, runs = [], {}
    for threads in thread_counts:
        for k in sorted({0, rerank_k}):
            run, ms = pipeline(c, store, setting, q, threads, ce if k else None, k)
            name = "dense (store)" + (f" + rerank top {k}" if k else "")
            runs.setdefault(name, run)
            rows.append({"threads": threads, "pipeline": name, "queries": len(q),
                         **{f"{s}_ms_{p}": stats.percentiles(ms[s], "ms")[f"ms_{p}"]
                            for s in STAGES for p in ("p50", "p99")}})
    return rows, runs


def check_setting(store: str, setting: dict) -> None:
    """Every key must be one the store's search ladder uses (a typo would be ignored silently)."""
    from llmarch_lab.labs.rag.stores import base

    keys = {"exact"}.union(*[set(s) for s in base.store_class(store).ladder])
    bad = sorted(set(setting) - keys)
    if bad:
        raise LabError(f"setting {', '.join(bad)}: not a {store} search setting (valid: {', '.join(sorted(keys))})")


def run(params: ScenarioParams, corpus=None) -> Result:
    """The scenario on the params' corpus (or `corpus`, e.g. a files.subset for a quick check)."""
    import pandas as pd

    from llmarch_lab.labs.rag.stores import base
    from llmarch_lab.labs.rag.stores import bench as sbench

    setting, thread_counts = parse_setting(params.setting), [int(t) for t in params.threads.split(",")]
    check_setting(params.store, setting)
    if min(thread_counts) < 1:
        raise LabError(f"threads {params.threads!r}: each at least 1")
    c = corpus if corpus is not None else files.load(params.which)
    mat = corpus_vectors(c, params.precision)
    q = evaluate.sample(c, "test", params.per_task, seed=params.seed)
    t0 = time.perf_counter()
    index = evaluate.bm25_index(c)
    res = Result()
    res.add("latency.bm25_index_s", time.perf_counter() - t0)
    ce = cross_encoder(c, params.train_queries, index) if params.rerank_k else None
    workdir = paths.cache_dir() / "rag_scenario" / params.store
    shutil.rmtree(workdir, ignore_errors=True)
    store = base.make(params.store, workdir)
    try:
        t0 = time.perf_counter()
        store.ingest(mat, sbench.payload_of(c).assign(text=vectors.texts(c)))
        res.add("latency.ingest_s", time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.build_index()
        res.add("latency.index_build_s", time.perf_counter() - t0)
        res.add("memory.index_disk_mb", store.disk_bytes() / 2**20)
        rows, runs = measure(c, store, setting, q, thread_counts, ce, params.rerank_k)
        runs = {"bm25s": evaluate.bm25_run(c, q, index=index), **runs,
                "hybrid (store)": hybrid_run(c, store, setting, q)}
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    pipe = pd.DataFrame(rows)
    rel = evaluate.table(q, runs)[["task", "retriever", "queries", "ndcg_at_10", "mrr_at_10", "recall_at_10",
                                   "success_at_10"]]
    _headline(res, pipe, rel, params.rerank_k)
    res.tables.update(pipeline=pipe, relevance=rel)
    res.figures.update(latency=latency_figure(pipe), relevance=relevance_figure(rel))
    return res


def _headline(res: Result, pipe, rel, rerank_k: int) -> None:
    """Key metrics: one thread, without and with reranking; relevance averaged over the tasks."""
    one = pipe[pipe.threads == pipe.threads.min()]
    plain = one[~one.pipeline.str.contains("rerank")].iloc[0]
    for p in ("p50", "p99"):
        res.add(f"latency.total_ms_{p}", plain[f"total_ms_{p}"])
        res.add(f"latency.embed_ms_{p}", plain[f"embed_ms_{p}"])
        res.add(f"latency.search_ms_{p}", plain[f"search_ms_{p}"])
    best = "dense (store)"
    if rerank_k:
        rr = one[one.pipeline.str.contains("rerank")].iloc[0]
        res.add("latency.total_rerank_ms_p50", rr["total_ms_p50"])
        res.add("latency.total_rerank_ms_p99", rr["total_ms_p99"])
        best = f"dense (store) + rerank top {rerank_k}"
    mine = rel[rel.retriever == best]
    res.add("quality.ndcg_at_10", float(mine.ndcg_at_10.mean()))
    res.add("quality.success_at_10", float(mine.success_at_10.mean()))


def latency_figure(pipe):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    labels = [f"{p} ({t} thr)" for p, t in zip(pipe.pipeline, pipe.threads)]
    left = [0.0] * len(pipe)
    for s in ("embed", "search", "rerank"):
        vals = pipe[f"{s}_ms_p50"].tolist()
        ax.barh(labels, vals, left=left, label=f"{s} p50")
        left = [a + b for a, b in zip(left, vals)]
    ax.scatter(pipe.total_ms_p99, labels, marker="|", s=300, color="black", label="total p99")
    ax.set_xscale("log")
    ax.set_xlabel("ms per query (log)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def relevance_figure(rel):
    wide = rel.pivot(index="task", columns="retriever", values="ndcg_at_10")
    ax = wide.plot.bar(figsize=(8, 3.2), rot=0)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def report(suite: str):
    from llmarch_lab.common.report import Report, directions_for
    from llmarch_lab.store.tables import runs_table

    metrics = {"ndcg_at_10": "quality.ndcg_at_10", "success_at_10": "quality.success_at_10",
               "total_ms_p99": "latency.total_ms_p99", "total_rerank_ms_p99": "latency.total_rerank_ms_p99",
               "index_build_s": "latency.index_build_s", "index_disk_mb": "memory.index_disk_mb"}
    df = runs_table(suite, "rag_scenario", ["which", "store", "setting", "per_task", "rerank_k"], metrics)
    return Report(f"retrieval scenario runs of suite {suite}", df, directions_for(metrics),
                  notes=["one thread; relevance averaged over the three tasks (per-task rows: the run's relevance table)"])
