"""LanceDB on the corpus's vectors: IVF-PQ (sqrt(n) partitions, 48-byte codes) with a refine step
on the full vectors; filters are SQL `where` clauses applied before the vector search (prefilter).
The ladder raises nprobes (partitions visited) at refine_factor 10, as the RAG lab's defaults."""

from __future__ import annotations

import os

from llmarch_lab.labs.rag.stores.base import Filter, Store

os.environ.setdefault("LANCEDB_LOG", "error")


class LanceStore(Store):
    name = "lancedb"
    ladder = tuple({"nprobes": n, "refine_factor": 10} for n in (5, 10, 20, 40, 80, 160))

    def __init__(self, workdir):
        super().__init__(workdir)
        import lancedb

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(self.workdir))
        self.table = None
        self.has_text = False

    def ingest(self, mat, payload, batch: int = 10_000) -> None:
        import numpy as np
        import pyarrow as pa

        def batches():
            for s in range(0, len(mat), batch):
                v = np.ascontiguousarray(mat[s:s + batch], dtype=np.float32)
                cols = {"id": pa.array(np.arange(s, s + len(v), dtype=np.int64)),
                        "source": pa.array(payload.source.iloc[s:s + batch].tolist()),
                        "n_chars": pa.array(payload.n_chars.iloc[s:s + batch].to_numpy(dtype=np.int32)),
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel(), pa.float32()), v.shape[1])}
                if self.has_text:
                    cols["text"] = pa.array(payload.text.iloc[s:s + batch].tolist())
                yield pa.record_batch(cols)

        self.has_text = "text" in payload
        fields = [("id", pa.int64()), ("source", pa.string()), ("n_chars", pa.int32()),
                  ("vector", pa.list_(pa.float32(), mat.shape[1]))]
        schema = pa.schema(fields + ([("text", pa.string())] if self.has_text else []))
        self.table = self.db.create_table("passages", batches(), schema=schema, mode="overwrite")

    def build_index(self) -> dict:
        from llmarch_lab.labs.rag import store as lab_store

        n, dim = self.table.count_rows(), self.table.schema.field("vector").type.list_size
        cfg = lab_store.index_config("ivf_pq", n, dim)
        self.table.create_index("vector", config=cfg, replace=True)
        for col in ("source", "n_chars"):  # scalar indexes make the prefilter cheap
            self.table.create_scalar_index(col, replace=True)
        if self.has_text:  # English stemming + stop words, as the lab's BM25
            from lancedb.index import FTS

            self.table.create_index("text", config=FTS(stem=True, remove_stop_words=True), replace=True)
        return {"index": "ivf_pq", "num_partitions": cfg.num_partitions, "num_sub_vectors": cfg.num_sub_vectors}

    def search(self, qv, k: int = 10, setting: dict | None = None, flt: Filter | None = None) -> list[int]:
        s = self.table.search(qv).distance_type("cosine").limit(k)
        setting = setting or {}
        if setting.get("exact"):
            s = s.bypass_vector_index()
        if setting.get("nprobes"):
            s = s.nprobes(setting["nprobes"])
        if setting.get("refine_factor"):
            s = s.refine_factor(setting["refine_factor"])
        where = _where(flt)
        if where:
            s = s.where(where, prefilter=True)
        return s.select(["id"]).to_arrow()["id"].to_pylist()


    def hybrid(self, qv, text: str, k: int = 10, setting: dict | None = None, candidates: int = 100) -> list[int]:
        from lancedb.rerankers import RRFReranker

        setting = setting or {}
        s = self.table.search(query_type="hybrid").vector(qv).text(text).distance_type("cosine")
        if setting.get("nprobes"):
            s = s.nprobes(setting["nprobes"])
        if setting.get("refine_factor"):
            s = s.refine_factor(setting["refine_factor"])
        return s.limit(k).rerank(RRFReranker(K=60)).select(["id"]).to_arrow()["id"].to_pylist()


def _where(flt: Filter | None) -> str:
    if flt is None:
        return ""
    parts = []
    if flt.source is not None:
        parts.append("source = '" + flt.source.replace("'", "''") + "'")
    if flt.max_chars is not None:
        parts.append(f"n_chars < {int(flt.max_chars)}")
    return " AND ".join(parts)
