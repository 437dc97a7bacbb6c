"""RAG lab: which retrieval design wins on these documents, by how much, at what latency, and
do the generated answers hold up?

    llmarch-lab run experiments/rag.yaml                 # the study: both corpora, every mode
    llmarch-lab run experiments/quickstart.yaml --only rag
    # or interactively: notebooks/30_rag.ipynb

One run = one corpus x chunking x embedder x retrieval mode (x fusion x reranker). It builds a
real LanceDB table (or the bm25s peer index), runs every query one at a time (latency is per
request: query embedding + search + chunk->document aggregation), scores the ranked documents
with ranx, and optionally answers a sample of questions with the LLM and scores those answers
with ragas (non-LLM metrics; LLM-judged ones when a judge endpoint is configured).
"""

from __future__ import annotations

import random
import shutil
import time
from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab.assets import corpora, models
from llmarch_lab.common import ir, stats
from llmarch_lab.config import Dtype, EmbedderFields, ModelSpec
from llmarch_lab.labs.rag import chunking, generate, ragas_eval, retrieval, store
from llmarch_lab.llm import local
from llmarch_lab.results import Result


class RagParams(EmbedderFields):
    lab = "rag"
    key_metrics = ("quality.ndcg_at_10", "quality.recall_at_10", "quality.mrr_at_10", "latency.query_ms_p95")

    # corpus
    corpus: Literal["cranfield", "pubmedqa"] = Field("cranfield", description="Benchmark: cranfield (graded qrels) or pubmedqa (question -> own abstract).")
    fields: Literal["title+text", "text"] = Field("title+text", description="Indexed fields (Cranfield has titles; PubMedQA has none, so both mean text).")
    n_docs: int = Field(0, ge=0, description="Random subset of documents (0 = all).")
    n_queries: int = Field(0, ge=0, description="Random subset of queries with a relevant doc in the corpus (0 = all).")
    # chunking
    chunking: Literal["none", "fixed", "recursive"] = Field("none", description="none | fixed (token windows with overlap) | recursive (passage > sentence > word).")
    chunk_size: int = Field(128, ge=16, le=8192, description="Chunk size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Overlap between neighbouring chunks, embedder tokens.")
    # embeddings
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Chunks per embedding batch.")
    normalize: bool = Field(True, description="L2-normalise embeddings (cosine = dot product).")
    query_threads: int = Field(1, ge=1, le=256, description="CPU threads of the query encoder while serving queries (1 = one request per core, steady on a shared CPU).")
    query_encoder: Literal["auto", "onnx", "torch"] = Field("auto", description="Query embedding: onnx (ONNX Runtime export of the embedder, ~2x faster per query on CPU, same vectors) | torch (SentenceTransformer.encode) | auto (onnx on CPU, torch on GPU).")
    # store
    uri: str = Field("", description="LanceDB location; '' = a fresh local folder under the cache, removed after the run.")
    index: Literal["auto", "flat", "ivf_pq", "ivf_hnsw_sq"] = Field("auto", description="Vector index: auto = flat below index_threshold rows, ivf_pq above.")
    index_threshold: int = Field(store.DEFAULT_THRESHOLD, ge=1, description="Rows from which index=auto builds an ANN index.")
    # ANN search settings (ignored by a flat table). benchmarks/ann_scale.py, 1M x 384 IVF-PQ:
    # refine 0 -> recall@10 0.68, refine 10 -> 0.9995 at p99 ~15 ms; so refinement is on by default.
    nprobes: int = Field(20, ge=0, description="IVF partitions probed per query (0 = LanceDB default).")
    refine_factor: int = Field(10, ge=0, description="Re-rank refine_factor x k ANN candidates on full vectors (0 = off).")
    # retrieval
    mode: Literal["dense", "bm25", "hybrid", "bm25s"] = Field("hybrid", description="dense | bm25 (LanceDB FTS) | hybrid | bm25s (independent BM25 peer).")
    fusion: Literal["rrf", "linear"] = Field("rrf", description="Hybrid fusion: LanceDB RRFReranker or LinearCombinationReranker.")
    rrf_k: int = Field(60, ge=1, description="RRF constant k in 1/(k + rank).")
    linear_weight: float = Field(0.5, ge=0.0, le=1.0, description="Linear fusion: weight of the vector score (1 - weight on BM25).")
    candidates: int = Field(50, ge=1, le=1000, description="Chunks fetched per retriever per query, before fusion and doc aggregation.")
    reranker: str = Field("", description="Cross-encoder spec (sentence-transformers CrossEncoder); '' = none.")
    top_k: int = Field(10, ge=1, le=1000, description="Documents kept per query; recall is reported at this k (and at 10).")
    # generation (PubMedQA only: it has reference answers)
    n_generate: int = Field(0, ge=0, le=1000, description="Questions answered by the LLM and scored with ragas (0 = skip).")
    llm: ModelSpec = models.SMOLLM2  # the answering LLM; device (embedder, reranker, LLM): EmbedderFields
    dtype: Dtype = "float32"
    context_k: int = Field(3, ge=1, le=50, description="Top chunks given to the LLM as context.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Tokens generated per answer at most.")
    prompt_template: str = Field(generate.DEFAULT_TEMPLATE, description="Prompt with {context} and {question}.")
    # LLM judge (optional; any OpenAI-compatible endpoint)
    judge_base_url: str = Field("", description="OpenAI-compatible base URL of the judge, e.g. http://host:8000/v1 ('' = no judge).")
    judge_model: str = Field("", description="Judge model name as the endpoint knows it.")
    judge_api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the judge's API key (never the key itself).")
    judge_timeout_s: float = Field(60.0, gt=0, description="Seconds per judge HTTP call; a judgement may take 3x this before it counts as failed.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})")
        if self.candidates < self.top_k:
            raise ValueError(f"candidates ({self.candidates}) must be >= top_k ({self.top_k})")
        if self.mode == "bm25s" and self.reranker:
            raise ValueError("reranker: the bm25s peer runs plain; use mode dense, bm25 or hybrid to rerank")
        if self.n_generate and self.corpus != "pubmedqa":
            raise ValueError("n_generate: answers are scored against reference answers, which only pubmedqa has")
        if bool(self.judge_base_url) != bool(self.judge_model):
            raise ValueError("judge_base_url and judge_model: set both (or neither)")
        if self.judge_base_url and not self.n_generate:
            raise ValueError("judge_base_url: the judge scores generated answers; set n_generate > 0")
        generate.check_template(self.prompt_template)
        return self


# ---------------------------------------------------------------------------------- stages

def _embedder(p: RagParams):
    from llmarch_lab.llm.embeddings import Embedder

    if p.mode in ("bm25", "bm25s"):
        return None
    return Embedder(p.embedder, device=p.device, batch_size=p.embed_batch_size, normalize=p.normalize,
                          query_encoder=p.query_encoder, query_threads=p.query_threads)


def _searcher(p: RagParams, chunks, vectors, res: Result):
    """(search(query, embedder) -> (chunk hits, query-embedding ms), temporary store folder or None)."""
    t0 = time.perf_counter()
    if p.mode == "bm25s":
        peer = retrieval.BM25Peer(chunks)
        res.add("latency.index_build_s", time.perf_counter() - t0)
        res.tags["index_type"] = "bm25s"
        return (lambda q, emb: (peer.search(q, p.candidates), 0.0)), None
    uri = p.uri or store.default_uri()
    table, stats = store.build(chunks, vectors, uri=uri, name=f"{p.corpus}_{p.chunking}",
                               fts=p.mode in ("bm25", "hybrid"), index=p.index, threshold=p.index_threshold)
    res.add("latency.index_build_s", stats.build_s)
    res.add("memory.index_disk_mb", stats.disk_mb)
    res.tags.update(index_type=stats.index_type, store_uri=stats.uri)
    reranker = None
    if p.reranker or p.mode == "hybrid":
        reranker = retrieval.make_reranker(p.fusion, p.rrf_k, p.linear_weight, p.reranker, p.device)
    r = retrieval.LanceRetriever(table, p.mode, reranker=reranker, nprobes=p.nprobes or None,
                                 refine_factor=p.refine_factor or None)

    def search(q, emb):
        t1 = time.perf_counter()
        qv = emb.embed_query(q) if emb is not None else None
        embed_ms = (time.perf_counter() - t1) * 1000
        return r.search(q, p.candidates, query_vector=qv), embed_ms

    return search, (None if p.uri else uri)


def _retrieve_all(p: RagParams, corpus, search, emb):
    """Run every query once; (ranx run dict, per-query rows, top-context texts by qid)."""
    # One thread per query, as a latency-bound server runs (see local.torch_threads).
    with local.torch_threads(p.query_threads):
        return _query_loop(p, corpus, search, emb)


def _query_loop(p: RagParams, corpus, search, emb):
    from tqdm.auto import tqdm

    search(corpus.queries.text.iloc[0], emb)  # warm-up: first query pays caches and lazy loads
    run, rows, contexts = {}, [], {}
    for qid, text in tqdm(list(zip(corpus.queries.qid, corpus.queries.text)), desc=f"{p.mode} queries"):
        t0 = time.perf_counter()
        hits, embed_ms = search(text, emb)
        docs = retrieval.to_docs(hits, p.top_k)
        total_ms = (time.perf_counter() - t0) * 1000
        run[qid] = dict(docs)
        contexts[qid] = hits.text.head(p.context_k).tolist()
        rows.append({"qid": qid, "query": text, "query_ms": total_ms, "embed_ms": embed_ms,
                     "search_ms": total_ms - embed_ms, "top_docs": " ".join(d for d, _ in docs[:5]),
                     "relevant": " ".join(sorted(corpus.qrels[qid], key=lambda d: -corpus.qrels[qid][d])[:5])})
    return run, rows, contexts


def _answers(p: RagParams, corpus, contexts, res: Result):
    """Generate answers for a random sample of questions and score them with ragas."""
    import numpy as np
    import pandas as pd

    rng = random.Random(p.seed)
    qids = rng.sample(list(corpus.queries.qid), min(p.n_generate, len(corpus.queries)))
    qtext = dict(zip(corpus.queries.qid, corpus.queries.text))
    gen = generate.Generator(p.llm, device=p.device, dtype=p.dtype, template=p.prompt_template)
    res.add("latency.llm_load_s", gen.load_s)
    local.warm_up(gen.model, gen.tok)
    rows = []
    for qid in qids:
        a = gen.answer(qtext[qid], contexts[qid], p.max_new_tokens)
        rows.append({"qid": qid, "question": qtext[qid], "answer": a.text, "reference": corpus.references[qid]["answer"],
                     "retrieved_contexts": contexts[qid][:a.passages_used],
                     "reference_contexts": corpus.references[qid]["contexts"], "prompt_tokens": a.prompt_tokens,
                     "output_tokens": a.output_tokens, "generate_ms": a.seconds * 1000})
    table = pd.DataFrame(rows)
    # Output tokens per second of whole generate calls (prefill included): what a user waits for.
    res.add("throughput.output_tok_per_s", table.output_tokens.sum() / (table.generate_ms.sum() / 1000))
    res.metrics.update(stats.percentiles(table.generate_ms, "latency.generate_ms"))
    scores = ragas_eval.nonllm_scores(rows)
    for name in ragas_eval.NONLLM_METRICS:
        res.add(f"quality.ragas.{name}", float(np.nanmean(scores[name])))
    table = pd.concat([table, scores], axis=1)
    if p.judge_base_url:
        judged, failures = ragas_eval.judge_scores(rows, p.judge_base_url, p.judge_model, p.judge_api_key_env,
                                                   p.judge_timeout_s, p.embedder)
        res.add("count.judge_failures", failures)
        res.add("count.judge_judgements", judged.shape[0] * len(ragas_eval.JUDGE_METRICS))
        for name in ragas_eval.JUDGE_METRICS:
            ok = judged[name].dropna()
            if len(ok):  # a metric whose every judgement failed has no value, not a zero
                res.add(f"quality.ragas.{name}", float(ok.mean()))
        table = pd.concat([table, judged], axis=1)
    table["retrieved_contexts"] = table.retrieved_contexts.map(lambda c: " ||| ".join(c)[:2000])
    table["reference_contexts"] = table.reference_contexts.map(lambda c: " ||| ".join(c)[:2000])
    res.tables["answers"] = table


def run(p: RagParams) -> Result:
    import pandas as pd

    res = Result(tags={"corpus": p.corpus, "mode": p.mode, "chunking": p.chunking, "embedder": p.embedder,
                       "fusion": p.fusion if p.mode == "hybrid" else "", "reranker": p.reranker})
    corpus = corpora.load(p.corpus, p.fields, p.n_docs, p.n_queries, p.seed)
    emb = _embedder(p)
    tok = None
    if p.chunking != "none":
        tok = emb.tokenizer if emb is not None else models.load_tokenizer(p.embedder)
    chunks = chunking.chunk_documents(corpus.docs, p.chunking, p.chunk_size, p.chunk_overlap, tok)
    res.tags.update(n_docs=str(len(corpus.docs)), n_chunks=str(len(chunks)), n_queries=str(len(corpus.queries)))
    vectors = None
    if emb is not None:
        t0 = time.perf_counter()
        vectors = emb.embed(chunks.text.tolist())
        res.add("latency.embed_corpus_s", time.perf_counter() - t0)
        res.add("latency.embedder_load_s", emb.load_s)
        res.add("latency.query_encoder_load_s", emb.prepare_query_encoder())  # ONNX export/load, before timing
        res.tags["query_encoder"] = emb.query_backend
        res.tags.update(embed_cache_hits=str(emb.hits), embed_cache_misses=str(emb.misses))
        if emb.misses:  # chunks/s only means something when chunks were actually embedded
            res.add("throughput.embed_chunks_per_s", emb.misses / max(emb.encode_s, 1e-9))
    search, tmp_uri = _searcher(p, chunks, vectors, res)
    try:
        run_dict, rows, contexts = _retrieve_all(p, corpus, search, emb)
    finally:
        if tmp_uri:
            shutil.rmtree(tmp_uri, ignore_errors=True)
    res.add("throughput.index_chunks_per_s", len(chunks) / max(res.metrics["latency.index_build_s"], 1e-9))
    means, per_query = ir.ir_metrics(corpus.qrels, run_dict, p.top_k)
    res.metrics.update(means)
    q = pd.DataFrame(rows).merge(per_query, on="qid", how="left")
    for col in ("query_ms", "embed_ms", "search_ms"):
        if col != "embed_ms" or emb is not None:
            res.metrics.update(stats.percentiles(q[col], f"latency.{col}"))
    res.tables["queries"] = q
    res.figures["per_query"] = per_query_plot(q, p)
    if p.n_generate:
        _answers(p, corpus, contexts, res)
    return res


def per_query_plot(q, p: RagParams):
    """nDCG@10 per query (how uneven the quality is) and query latency (what the tail costs)."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.hist(q["quality.ndcg_at_10"], bins=20, color="tab:blue")
    a.set_xlabel("nDCG@10 per query")
    a.set_ylabel("queries")
    b.hist(q["query_ms"], bins=30, color="tab:orange")
    b.axvline(q["query_ms"].quantile(0.95), color="k", ls="--", label="p95")
    b.set_xlabel("query latency, ms (embed + search + aggregate)")
    b.legend()
    fig.suptitle(f"{p.corpus} · {p.mode}{' ' + p.fusion if p.mode == 'hybrid' else ''} · chunking {p.chunking}")
    fig.tight_layout()
    plt.close(fig)  # shown where the notebook asks for it, not again under the run cell
    return fig
