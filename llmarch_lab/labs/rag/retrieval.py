"""Retrieval modes over a LanceDB chunk table, and an independent BM25 peer.

    from llmarch_lab.labs.rag import retrieval
    r = retrieval.LanceRetriever(table, "hybrid", reranker=retrieval.make_reranker("rrf"))
    hits = r.search("what is the shock wave ...", k=50, query_vector=qv)   # chunk rows, best first
    docs = retrieval.to_docs(hits, k=10)                                   # [(doc_id, score)]
    peer = retrieval.BM25Peer(chunks); peer.search("...", k=50)

Modes:
    dense   vector search (cosine) on the table's `vector` column
    bm25    LanceDB's native full-text index (BM25, English stemming and stop words)
    hybrid  both, fused by a LanceDB reranker: RRFReranker (reciprocal rank fusion, constant
            `rrf_k`) or LinearCombinationReranker (`weight` on the min-max normalised vector
            score, 1 - weight on the normalised BM25 score)
    bm25s   the peer: the bm25s library (Lucene BM25, PyStemmer English stemmer, English stop
            words), so "hybrid beats BM25" is measured against another implementation too
A cross-encoder (any sentence-transformers CrossEncoder spec) replaces the fusion in hybrid mode
and re-orders the candidates in dense/bm25 mode (LanceDB CrossEncoderReranker).
"""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.assets import models

MODES = ("dense", "bm25", "hybrid", "bm25s")
FUSIONS = ("rrf", "linear")
COLUMNS = ["chunk_id", "doc_id", "text"]


def _check_query(query: str, k: int) -> None:
    if not isinstance(query, str) or not query.strip():
        raise LabError("query is empty: give a non-empty question")
    if k < 1:
        raise LabError(f"k must be >= 1, got {k}")


def make_reranker(fusion: str = "rrf", rrf_k: int = 60, linear_weight: float = 0.5,
                  cross_encoder: str = "", device: str = "cpu"):
    """The LanceDB reranker for hybrid fusion, or a cross-encoder when a model spec is given."""
    from lancedb.rerankers import CrossEncoderReranker, LinearCombinationReranker, RRFReranker

    if cross_encoder:
        rr = CrossEncoderReranker(model_name=models.resolve(cross_encoder), column="text",
                                  device=models.resolve_device(device), trust_remote_code=False)
        try:
            _ = rr.model  # load now (a lazy property), so a bad spec fails before any query is timed
        except OSError as e:
            raise models.unknown_model_error(cross_encoder, e) from None
        return rr
    if fusion == "rrf":
        return RRFReranker(K=rrf_k)
    if fusion == "linear":
        if not 0.0 <= linear_weight <= 1.0:
            raise LabError(f"linear_weight must be in [0, 1], got {linear_weight}")
        return LinearCombinationReranker(weight=linear_weight)
    raise LabError(f"fusion {fusion!r}: valid are {', '.join(FUSIONS)}")


class LanceRetriever:
    """dense | bm25 | hybrid search over a table built by `store.build`."""

    def __init__(self, table, mode: str, reranker=None, metric: str = "cosine",
                 nprobes: int | None = None, refine_factor: int | None = None):
        if mode not in MODES or mode == "bm25s":
            raise LabError(f"mode {mode!r}: LanceRetriever serves dense, bm25, hybrid (bm25s is BM25Peer)")
        if mode == "hybrid" and reranker is None:
            raise LabError("mode 'hybrid' needs a reranker (make_reranker('rrf'|'linear'))")
        self.table, self.mode, self.reranker, self.metric = table, mode, reranker, metric
        self.nprobes, self.refine_factor = nprobes, refine_factor

    def _vector_opts(self, q):
        q = q.distance_type(self.metric)
        if self.nprobes:
            q = q.nprobes(self.nprobes)
        if self.refine_factor:
            q = q.refine_factor(self.refine_factor)
        return q

    def search(self, query: str, k: int = 10, query_vector=None):
        """Top-k chunks as a DataFrame(chunk_id, doc_id, text, score), higher score = better."""
        import pandas as pd

        _check_query(query, k)
        if self.mode in ("dense", "hybrid") and query_vector is None:
            raise LabError(f"mode {self.mode!r} needs the query's vector (embed it with the corpus embedder)")
        if self.mode == "dense":
            q = self._vector_opts(self.table.search(query_vector, query_type="vector"))
            score_col = "_distance"
        elif self.mode == "bm25":
            q = self.table.search(query, query_type="fts")
            score_col = "_score"
        else:
            q = self._vector_opts(self.table.search(query_type="hybrid").vector(query_vector).text(query))
            score_col = "_relevance_score"
        q = q.limit(k)
        if self.reranker is not None:
            q = q.rerank(self.reranker)
            score_col = "_relevance_score"
        # to_arrow, not to_pandas: LanceDB's to_pandas first plans the output schema in a second
        # round trip, which doubled the per-query latency we measured (10.6 vs 4.0 ms p50).
        tbl = q.select(COLUMNS).to_arrow()  # LanceDB adds its score column (_distance/_score/...)
        score = tbl[score_col].to_numpy()
        if score_col == "_distance":  # cosine distance -> similarity, so higher is better everywhere
            score = 1.0 - score
        df = pd.DataFrame({c: tbl[c].to_pylist() for c in COLUMNS})
        df["score"] = score
        return df.head(k)


class BM25Peer:
    """The independent BM25 baseline: bm25s with the PyStemmer English stemmer and stop words."""

    def __init__(self, chunks, k1: float = 1.5, b: float = 0.75):
        import bm25s
        import Stemmer

        if chunks is None or len(chunks) == 0:
            raise LabError("corpus is empty: no chunks for the BM25 peer")
        self.chunks = chunks.reset_index(drop=True)
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(self.chunks["text"].astype(str).tolist(), stopwords="en",
                                stemmer=self.stemmer, show_progress=False)
        self.model = bm25s.BM25(k1=k1, b=b)
        self.model.index(tokens, show_progress=False)

    def search(self, query: str, k: int = 10):
        import bm25s
        import pandas as pd

        _check_query(query, k)
        qtok = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, return_ids=False,
                              show_progress=False)
        if not qtok or not qtok[0]:  # only stop words: nothing to match
            return pd.DataFrame(columns=COLUMNS + ["score"])
        idx, scores = self.model.retrieve(qtok, k=min(k, len(self.chunks)), show_progress=False,
                                          n_threads=1)
        rows = self.chunks.iloc[idx[0]][COLUMNS].copy()
        rows["score"] = scores[0]
        return rows[rows.score > 0].reset_index(drop=True)


def to_docs(hits, k: int | None = None) -> list[tuple[str, float]]:
    """Chunk hits (best first) -> [(doc_id, score)], each document scored by its best chunk."""
    seen: dict[str, float] = {}
    for doc_id, score in zip(hits["doc_id"], hits["score"]):
        if doc_id not in seen:
            seen[doc_id] = float(score)
    out = sorted(seen.items(), key=lambda kv: -kv[1])
    return out[:k] if k else out
