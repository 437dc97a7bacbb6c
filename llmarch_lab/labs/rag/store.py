"""The vector store: a real LanceDB table of chunks (text, source doc id, vector) with a native
full-text (BM25) index and, above a size threshold, an approximate vector index.

    from llmarch_lab.labs.rag import store
    table, stats = store.build(chunks, vectors, uri="/tmp/lance", name="cran", fts=True)
    stats.index_type, stats.build_s, stats.disk_mb

`uri` is any LanceDB location: a local folder (default: a fresh folder under the cache), or a
remote one (s3://..., gs://..., db://...) where LanceDB has credentials in the environment.

Vector index choice (`index`):
    flat          exact search, no index: best recall, cost grows linearly with rows
    ivf_pq        IVF partitions + product quantization (num_partitions ~ sqrt(rows),
                  dim/8 sub-vectors); query with `nprobes` and `refine_factor` (re-rank on full vectors)
    ivf_hnsw_sq   IVF partitions each holding an HNSW graph over 8-bit scalar-quantized vectors
    auto          flat below `threshold` rows, ivf_pq above (benchmarks/ann_scale.py measures why)
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, paths

INDEX_TYPES = ("auto", "flat", "ivf_pq", "ivf_hnsw_sq")
DEFAULT_THRESHOLD = 50_000  # rows; under this an exact scan of 384-dim vectors stays a few ms
# LanceDB's Rust core logs a deprecation warning on every query that selects columns; our queries
# are written for the future behaviour, so keep its log at errors unless the user asks otherwise.
os.environ.setdefault("LANCEDB_LOG", "error")


@dataclass
class StoreStats:
    rows: int
    index_type: str  # the vector index actually built (flat = none)
    build_s: float  # table write + all index builds, seconds
    vector_index_s: float
    fts_index_s: float
    disk_mb: float
    uri: str


def choose_index(rows: int, index: str = "auto", threshold: int = DEFAULT_THRESHOLD) -> str:
    if index not in INDEX_TYPES:
        raise LabError(f"index {index!r}: valid are {', '.join(INDEX_TYPES)}")
    if index != "auto":
        return index
    return "flat" if rows < threshold else "ivf_pq"


def index_config(index_type: str, rows: int, dim: int, metric: str = "cosine"):
    """LanceDB index config for a vector index, with sizes from the row count and dimension."""
    from lancedb.index import HnswSq, IvfPq

    if index_type == "ivf_pq":
        # sqrt(rows) partitions is the usual IVF rule (FAISS guideline, LanceDB docs); each PQ
        # sub-vector covers 8 dims so 384-dim vectors keep 48 bytes per row.
        parts = max(1, int(round(math.sqrt(rows))))
        subs = dim // 8 if dim % 8 == 0 else (dim // 4 if dim % 4 == 0 else 1)
        return IvfPq(distance_type=metric, num_partitions=parts, num_sub_vectors=subs)
    if index_type == "ivf_hnsw_sq":
        # Few large partitions: the HNSW graph inside each does the fine search.
        parts = max(1, rows // 250_000)
        return HnswSq(distance_type=metric, num_partitions=parts)
    raise LabError(f"no vector index config for {index_type!r}")


def default_uri() -> str:
    root = paths.cache_dir() / "lancedb"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="rag-", dir=root)


def connect(uri: str):
    import lancedb

    try:
        return lancedb.connect(uri)
    except Exception as e:  # noqa: BLE001 - any backend error: name the uri
        raise LabError(f"LanceDB uri {uri!r}: cannot connect ({str(e).splitlines()[0][:160]})") from None


def _disk_mb(uri: str) -> float:
    p = Path(uri)
    if not p.is_dir():
        return 0.0  # remote store: size not measured
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def build(chunks, vectors=None, uri: str | None = None, name: str = "chunks", fts: bool = True,
          index: str = "auto", threshold: int = DEFAULT_THRESHOLD, metric: str = "cosine"):
    """Write chunks (+ vectors) as a LanceDB table, build the FTS and vector indexes.

    chunks: DataFrame(chunk_id, doc_id, chunk_index, text); vectors: (n, dim) float32 or None
    (BM25-only table). Returns (table, StoreStats).
    """
    import numpy as np
    import pyarrow as pa

    if chunks is None or len(chunks) == 0:
        raise LabError(f"corpus is empty: no chunks to store in LanceDB table {name!r}")
    if vectors is not None and len(vectors) != len(chunks):
        raise LabError(f"table {name!r}: {len(vectors)} vectors for {len(chunks)} chunks")
    uri = uri or default_uri()
    db = connect(uri)
    cols = {"chunk_id": pa.array(chunks["chunk_id"].astype(str).tolist()),
            "doc_id": pa.array(chunks["doc_id"].astype(str).tolist()),
            "chunk_index": pa.array(chunks["chunk_index"].astype("int32").tolist(), pa.int32()),
            "text": pa.array(chunks["text"].astype(str).tolist())}
    dim = 0
    if vectors is not None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim)
    t0 = time.perf_counter()
    table = db.create_table(name, pa.table(cols), mode="overwrite")
    fts_s = vec_s = 0.0
    if fts:
        from lancedb.index import FTS

        t1 = time.perf_counter()
        # English stemming + stop words: the same text analysis the bm25s peer uses.
        table.create_index("text", config=FTS(stem=True, remove_stop_words=True), replace=True)
        fts_s = time.perf_counter() - t1
    index_type = "flat"
    if vectors is not None:
        index_type = choose_index(len(chunks), index, threshold)
        if index_type != "flat":
            t1 = time.perf_counter()
            table.create_index("vector", config=index_config(index_type, len(chunks), dim, metric),
                               replace=True)
            vec_s = time.perf_counter() - t1
    build_s = time.perf_counter() - t0
    return table, StoreStats(rows=len(chunks), index_type=index_type, build_s=build_s,
                             vector_index_s=vec_s, fts_index_s=fts_s, disk_mb=_disk_mb(uri), uri=uri)
