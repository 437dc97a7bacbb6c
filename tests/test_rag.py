"""RAG building blocks on real components: MiniLM embeddings, LanceDB tables in tmp_path, bm25s,
ranx. A slice of PubMedQA keeps it fast; every check is a property that a broken part fails."""

import numpy as np
import pandas as pd
import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import corpora, datasets, models
from llmarch_lab.common import ir, stats
from llmarch_lab.config import parameters_cell, validate_params
from llmarch_lab.labs.rag import chunking, retrieval, store
from llmarch_lab.labs.rag.lab import RagParams
from llmarch_lab.llm.embeddings import Embedder

N_DOCS = 40


@pytest.fixture(scope="module")
def slice_(tmp_path_factory):
    """40 random PubMedQA abstracts, their MiniLM vectors (cache in tmp) and a LanceDB table."""
    corpus = corpora.load("pubmedqa", n_docs=N_DOCS, seed=1)
    emb = Embedder(models.MINILM, cache_dir=tmp_path_factory.mktemp("emb-cache"))
    chunks = chunking.chunk_documents(corpus.docs, "none")
    vectors = emb.embed(chunks.text.tolist(), progress=False)
    uri = str(tmp_path_factory.mktemp("lance"))
    table, stats = store.build(chunks, vectors, uri=uri, name="pq")
    return corpus, emb, chunks, vectors, table, stats


# ------------------------------------------------------------------------------- chunking

def test_chunks_keep_doc_ids_and_respect_token_budget(slice_):
    corpus, emb, *_ = slice_
    docs = corpus.docs.head(8)
    none = chunking.chunk_documents(docs, "none")
    assert list(none.doc_id) == list(docs.doc_id)
    for strategy in ("fixed", "recursive"):
        ch = chunking.chunk_documents(docs, strategy, chunk_size=64, chunk_overlap=16, tokenizer=emb.tokenizer)
        assert set(ch.doc_id) == set(docs.doc_id), strategy  # every document is represented
        assert len(ch) > len(docs), strategy  # abstracts are longer than 64 tokens
        sizes = [len(emb.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ch.text]
        assert max(sizes) <= 64 + 8, (strategy, max(sizes))  # splitter may overshoot by one word
        for doc_id, text in zip(ch.doc_id, ch.text):  # each chunk is text of its own document
            assert text[:30] in docs.set_index("doc_id").text[doc_id]


def test_chunking_rejects_bad_settings(slice_):
    _, emb, *_ = slice_
    with pytest.raises(LabError, match="chunk_overlap"):
        chunking.chunk_documents(pd.DataFrame({"doc_id": ["a"], "text": ["x y"]}), "fixed", 32, 32, emb.tokenizer)
    with pytest.raises(LabError, match="chunking 'semantic'"):
        chunking.chunk_documents(pd.DataFrame({"doc_id": ["a"], "text": ["x y"]}), "semantic")


# ------------------------------------------------------------------------------ empty input

def test_empty_corpus_gives_clear_errors(tmp_path):
    empty = pd.DataFrame({"doc_id": [], "text": []})
    with pytest.raises(LabError, match="corpus is empty"):
        chunking.chunk_documents(empty, "none")
    with pytest.raises(LabError, match="corpus is empty"):
        chunking.chunk_documents(pd.DataFrame({"doc_id": ["a"], "text": ["   "]}), "none")
    no_chunks = pd.DataFrame({"chunk_id": [], "doc_id": [], "chunk_index": [], "text": []})
    with pytest.raises(LabError, match="corpus is empty"):
        store.build(no_chunks, None, uri=str(tmp_path / "lance"))
    with pytest.raises(LabError, match="corpus is empty"):
        retrieval.BM25Peer(no_chunks)


def test_empty_query_gives_clear_errors(slice_):
    _, emb, chunks, _, table, _ = slice_
    with pytest.raises(LabError, match="query is empty"):
        emb.embed_query("  ")
    with pytest.raises(LabError, match="query is empty"):
        retrieval.LanceRetriever(table, "bm25").search("", 5)
    with pytest.raises(LabError, match="query is empty"):
        retrieval.BM25Peer(chunks).search("\n", 5)


# ------------------------------------------------------------------------------ embeddings

def test_embedding_cache_hits_on_second_call(tmp_path):
    texts = ["Aspirin lowers fever.", "Statins lower cholesterol.", "Aspirin lowers fever."]
    first = Embedder(models.MINILM, cache_dir=tmp_path)
    a = first.embed(texts, progress=False)
    assert (first.hits, first.misses) == (0, 3)
    second = Embedder(models.MINILM, cache_dir=tmp_path)  # a new process would see the same
    b = second.embed(texts, progress=False)
    assert (second.hits, second.misses) == (3, 0) and second.encode_s == 0.0
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 384) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    other = Embedder(models.MINILM, cache_dir=tmp_path, normalize=False)  # other key: no stale hit
    other.embed(texts[:1], progress=False)
    assert other.misses == 1


def test_bf16_precision_agrees_with_fp32_and_keeps_its_own_cache_key(tmp_path, monkeypatch):
    from llmarch_lab.llm.embeddings import service

    texts = ["Aspirin lowers fever.", "Statins lower cholesterol in adults over fifty."]
    ref = Embedder(models.MINILM, cache_dir=tmp_path).embed(texts, progress=False)
    low = Embedder(models.MINILM, cache_dir=tmp_path, precision="bf16")
    got = low.embed(texts, progress=False)
    assert low.misses == 2, "bf16 must not read fp32 vectors from the cache"
    assert low.bf16_cosine >= service.BF16_MIN_COSINE and (ref * got).sum(axis=1).min() > 0.999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised again in fp32
    with pytest.raises(LabError, match="precision 'fp16'"):
        Embedder(models.MINILM, precision="fp16")
    monkeypatch.setattr(service, "BF16_MIN_COSINE", 1.01)  # no encoder can pass: the refusal names the way out
    with pytest.raises(LabError, match="disagrees with fp32 .*use precision fp32"):
        Embedder(models.MINILM, cache_dir=tmp_path, precision="bf16").embed(["new text"], progress=False)


# --------------------------------------------------------------------------- query encoder

@pytest.fixture(scope="module")
def onnx_export(slice_, tmp_path_factory):
    """A fresh ONNX export of MiniLM into tmp (the real exporter, not the machine's cached file)."""
    from llmarch_lab.llm.embeddings.onnx import OnnxQueryEncoder

    _, emb, *_ = slice_
    root = tmp_path_factory.mktemp("onnx")
    enc = OnnxQueryEncoder(emb.model, emb.spec, threads=1, cache_dir=root)
    return root, enc


def test_onnx_query_encoder_gives_the_reference_vectors(slice_, onnx_export):
    corpus, emb, *_ = slice_
    root, enc = onnx_export
    assert enc.exported and enc.path.is_file() and enc.path.parent.parent == root
    assert emb.query_backend == "onnx"  # auto on CPU: the fast path is the default
    ref = Embedder(models.MINILM, query_encoder="torch")
    for q in list(corpus.queries.text[:10]) + ["a", "x " * 400]:  # short, typical, truncated at max length
        fast, slow = enc.encode(q), ref.embed_query(q)
        assert fast.shape == slow.shape == (384,) and fast.dtype == np.float32
        assert float(np.dot(fast, slow)) > 0.999, q[:40]
        assert np.linalg.norm(fast) == pytest.approx(1.0, abs=1e-5)


def test_onnx_and_torch_query_encoders_rank_the_same(slice_):
    corpus, emb, _, _, table, _ = slice_
    r = retrieval.LanceRetriever(table, "hybrid", reranker=retrieval.make_reranker("rrf"))
    ref = Embedder(models.MINILM, query_encoder="torch")
    for qid, q in list(zip(corpus.queries.qid, corpus.queries.text))[:5]:
        fast = retrieval.to_docs(r.search(q, 10, query_vector=emb.embed_query(q)), 10)
        slow = retrieval.to_docs(r.search(q, 10, query_vector=ref.embed_query(q)), 10)
        assert [d for d, _ in fast] == [d for d, _ in slow], q[:40]
        assert fast[0][0] == qid  # the question's own abstract comes first either way


def test_query_encoder_errors_are_clear(slice_, onnx_export, monkeypatch):
    import shutil
    import sys

    import torch

    from llmarch_lab.llm.embeddings.onnx import OnnxQueryEncoder, weights_hash

    _, emb, *_ = slice_
    root, enc = onnx_export
    with pytest.raises(LabError, match="query_encoder 'tf'"):
        Embedder(models.MINILM, query_encoder="tf")
    # a model with other weights must not be served by a foreign graph: the probe check refuses it
    other = models.load_embedder(models.MINILM)
    with torch.no_grad():
        other[0].auto_model.encoder.layer[0].attention.self.query.weight.mul_(1.5)
    target = root / f"minilm-l6-{weights_hash(other)}" / "model.onnx"
    target.parent.mkdir()
    shutil.copy(enc.path, target)
    with pytest.raises(LabError, match="disagrees with the model"):
        OnnxQueryEncoder(other, "minilm-l6", cache_dir=root)
    target.write_bytes(b"not an onnx file")
    with pytest.raises(LabError, match="cannot load .*delete that folder"):
        OnnxQueryEncoder(other, "minilm-l6", cache_dir=root)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the package were not installed
    with pytest.raises(LabError, match="needs onnxruntime .*query_encoder: torch"):
        Embedder(models.MINILM, query_encoder="onnx").embed_query("aspirin")


# ------------------------------------------------------------------------------- retrieval

@pytest.mark.parametrize("mode,fusion", [("dense", None), ("bm25", None), ("hybrid", "rrf"),
                                         ("hybrid", "linear"), ("bm25s", None)])
def test_question_retrieves_its_own_abstract(slice_, mode, fusion):
    corpus, emb, chunks, _, table, stats = slice_
    assert stats.rows == N_DOCS and stats.index_type == "flat" and stats.disk_mb > 0
    if mode == "bm25s":
        r = retrieval.BM25Peer(chunks)
        search = lambda q: r.search(q, 10)  # noqa: E731
    else:
        rr = retrieval.make_reranker(fusion) if fusion else None
        r = retrieval.LanceRetriever(table, mode, reranker=rr)
        search = lambda q: r.search(q, 10, query_vector=emb.embed_query(q))  # noqa: E731
    found = 0
    for qid, q in zip(corpus.queries.qid, corpus.queries.text):
        hits = search(q)
        assert list(hits.columns) == ["chunk_id", "doc_id", "text", "score"]
        assert hits.score.is_monotonic_decreasing
        found += qid in [d for d, _ in retrieval.to_docs(hits, 3)]
    assert found / len(corpus.queries) >= 0.85, (mode, fusion, found)


def test_to_docs_keeps_best_chunk_per_document():
    hits = pd.DataFrame({"doc_id": ["a", "b", "a", "c"], "score": [0.9, 0.8, 0.7, 0.6]})
    assert retrieval.to_docs(hits) == [("a", 0.9), ("b", 0.8), ("c", 0.6)]
    assert retrieval.to_docs(hits, 2) == [("a", 0.9), ("b", 0.8)]


def test_cross_encoder_reranker_path(slice_, tmp_path):
    """Any CrossEncoder spec works: here one built from MiniLM with an untrained head (offline)."""
    from sentence_transformers import CrossEncoder

    corpus, emb, _, _, table, _ = slice_
    path = tmp_path / "ce"
    CrossEncoder(models.minilm_dir(), num_labels=1).save(str(path))
    rr = retrieval.make_reranker(cross_encoder=str(path))
    q = corpus.queries.text.iloc[0]
    hits = retrieval.LanceRetriever(table, "hybrid", reranker=rr).search(q, 5, query_vector=emb.embed_query(q))
    assert len(hits) == 5 and hits.score.is_monotonic_decreasing
    with pytest.raises(LabError, match="no such local path|not loadable"):
        retrieval.make_reranker(cross_encoder="./no/such/cross-encoder")


def test_index_choice():
    assert store.choose_index(1_000) == "flat"
    assert store.choose_index(2_000_000) == "ivf_pq"
    assert store.choose_index(10, "ivf_hnsw_sq") == "ivf_hnsw_sq"
    cfg = store.index_config("ivf_pq", 1_000_000, 384)
    assert (cfg.num_partitions, cfg.num_sub_vectors) == (1000, 48)
    with pytest.raises(LabError, match="index 'hnsw'"):
        store.choose_index(10, "hnsw")


def test_ann_index_is_built_above_threshold_and_finds_exact_match(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1200, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = pd.DataFrame({"chunk_id": [f"{i}#0" for i in range(1200)], "doc_id": [str(i) for i in range(1200)],
                           "chunk_index": 0, "text": [f"document number {i}" for i in range(1200)]})
    table, stats = store.build(chunks, vecs, uri=str(tmp_path / "ann"), name="ann", fts=False, threshold=1000)
    assert stats.index_type == "ivf_pq" and stats.vector_index_s > 0
    r = retrieval.LanceRetriever(table, "dense", nprobes=20, refine_factor=10)
    for i in (3, 777):
        hits = r.search("unused for dense", 5, query_vector=vecs[i])
        assert hits.doc_id.iloc[0] == str(i)  # refinement on full vectors recovers the exact match


# --------------------------------------------------------------------------------- metrics

def test_metrics_match_hand_checked_example():
    # Relevant d1 (grade 2), d2 (grade 1); ranked d3, d1, d2. Linear-gain nDCG@10:
    # DCG = 2/log2(3) + 1/log2(4) = 1.76186; IDCG = 2/log2(2) + 1/log2(3) = 2.63093 -> 0.66967.
    # MRR@10 = 1/2 (first relevant at rank 2); recall@2 = 1/2; recall@10 = 1.
    # q2: relevant d9, nothing retrieved -> all zeros, and it still counts in the means.
    qrels = {"q1": {"d1": 2, "d2": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d3": 0.9, "d1": 0.8, "d2": 0.7}, "q2": {}}
    means, per = ir.ir_metrics(qrels, run, k=2)
    row = per.set_index("qid").loc["q1"]
    assert row["quality.ndcg_at_10"] == pytest.approx(1.76186 / 2.63093, abs=1e-5)
    assert row["quality.mrr_at_10"] == pytest.approx(0.5)
    assert row["quality.recall_at_2"] == pytest.approx(0.5)
    assert row["quality.recall_at_10"] == pytest.approx(1.0)
    assert means["quality.ndcg_at_10"] == pytest.approx(1.76186 / 2.63093 / 2, abs=1e-5)
    assert means["quality.mrr_at_10"] == pytest.approx(0.25)
    lat = stats.percentiles(range(1, 101), "latency.query_ms")
    assert lat["latency.query_ms_p50"] == pytest.approx(50.5)
    assert lat["latency.query_ms_p99"] == pytest.approx(99.01)
    with pytest.raises(LabError, match="no entry for 1 judged"):
        ir.ir_metrics(qrels, {"q1": {}}, k=2)


def test_cranfield_grades_map_so_grade_one_counts_most():
    c = corpora.load("cranfield", n_queries=5, seed=0)
    assert len(c.docs) == 1400 and len(c.queries) == 5
    assert all(1 <= r <= 4 for rels in c.qrels.values() for r in rels.values())
    raw = datasets.cranfield().docs
    titled = raw.title.str.len() > 0
    joined = (raw.title + ". " + raw.text)[titled].tolist()
    assert c.docs.text[titled.values].tolist() == joined  # fields=title+text indexes both


# ---------------------------------------------------------------------------------- params

def test_params_reject_inconsistent_settings():
    with pytest.raises(LabError, match="n_generate"):
        validate_params(RagParams, {"corpus": "cranfield", "n_generate": 2}, "test")
    with pytest.raises(LabError, match="candidates"):
        validate_params(RagParams, {"candidates": 5, "top_k": 10}, "test")
    with pytest.raises(LabError, match="unknown parameter"):
        validate_params(RagParams, {"modes": "dense"}, "test")
    with pytest.raises(LabError, match="judge_base_url and judge_model"):
        validate_params(RagParams, {"corpus": "pubmedqa", "n_generate": 1, "judge_base_url": "http://x"}, "test")
    with pytest.raises(LabError, match="prompt_template must contain"):
        validate_params(RagParams, {"prompt_template": "no placeholders"}, "test")


def test_notebook_parameters_cell_is_the_model_defaults():
    from llmarch_lab.config import notebooks_dir

    cell = parameters_cell(notebooks_dir() / "30_rag.ipynb")
    assert set(cell) == set(RagParams.model_fields)
    assert RagParams(**cell) == RagParams()
