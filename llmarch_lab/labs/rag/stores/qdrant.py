"""Qdrant's engine in-process (qdrant-edge-py: one shard = one folder, no server): HNSW (m 16,
ef_construct 100) built by `optimize()`, which blocks until the graph is built; keyword and integer
payload indexes serve the filters (Qdrant plans filtered searches by the filter's cardinality:
small subsets are scanned exactly, large ones walk the graph with the filter applied).

Two thresholds would silently turn the index off on a small table (research note, tests): the
optimizer builds HNSW only above `indexing_threshold` KB of vectors, and the planner scans instead
of walking the graph below `full_scan_threshold` KB; both are set low so the benchmark always
measures the graph. Search and indexing use one thread each, like the other stores' query path.
The ladder raises hnsw_ef (the search's candidate list)."""

from __future__ import annotations

from llmarch_lab.labs.rag.stores.base import Filter, Store

M, EF_CONSTRUCT = 16, 100


class QdrantStore(Store):
    name = "qdrant"
    ladder = tuple({"hnsw_ef": ef} for ef in (16, 32, 64, 128, 256, 512))

    def __init__(self, workdir):
        super().__init__(workdir)
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        self.shard = None

    def _create(self, dim: int):
        import shutil

        import qdrant_edge as q

        shutil.rmtree(self.workdir, ignore_errors=True)  # the store's own scratch folder: a new shard each ingest
        cfg = q.EdgeConfig(
            vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine),
            hnsw_config=q.HnswIndexConfig(m=M, ef_construct=EF_CONSTRUCT, full_scan_threshold=10,
                                          max_indexing_threads=2),
            optimizers=q.EdgeOptimizersConfig(indexing_threshold=10),
            max_search_threads=1, wal_enabled=False)
        self.shard = q.EdgeShard.create(str(self.workdir), cfg)
        self.shard.update(q.UpdateOperation.create_field_index("source", q.PayloadSchemaType.Keyword))
        self.shard.update(q.UpdateOperation.create_field_index("n_chars", q.PayloadSchemaType.Integer))

    def _text_index(self):
        import qdrant_edge as q

        # Qdrant's BM25 (scoring=True) with English stop words and the Snowball stemmer, as the lab's BM25
        params = q.TextIndexParams(tokenizer=q.TokenizerType.Word, lowercase=True, stopwords=q.Language.English,
                                   stemmer=q.SnowballParams(q.SnowballLanguage.English), scoring=True)
        self.shard.update(q.UpdateOperation.create_field_index("text", params))

    def ingest(self, mat, payload, batch: int = 10_000) -> None:
        import numpy as np
        import qdrant_edge as q

        self._create(mat.shape[1])
        src, nch = payload.source.tolist(), payload.n_chars.to_numpy()
        txt = payload.text.tolist() if "text" in payload else None
        if txt is not None:
            self._text_index()
        for s in range(0, len(mat), batch):
            block = np.asarray(mat[s:s + batch], dtype=np.float32)
            pts = [q.Point(id=s + i, vector=v, payload={"source": src[s + i], "n_chars": int(nch[s + i]),
                                                        **({"text": txt[s + i]} if txt is not None else {})})
                   for i, v in enumerate(block)]
            self.shard.update(q.UpdateOperation.upsert_points(pts))
        self.shard.flush()

    def build_index(self) -> dict:
        self.shard.optimize()
        info = self.shard.info()
        if info.indexed_vectors_count < info.points_count:
            from llmarch_lab import LabError

            raise LabError(f"qdrant: {info.indexed_vectors_count} of {info.points_count} vectors indexed after optimize()")
        return {"index": "hnsw", "m": M, "ef_construct": EF_CONSTRUCT}

    def search(self, qv, k: int = 10, setting: dict | None = None, flt: Filter | None = None) -> list[int]:
        import qdrant_edge as q

        setting = setting or {}
        params = q.SearchParams(exact=bool(setting.get("exact")), hnsw_ef=setting.get("hnsw_ef"))
        res = self.shard.query(q.QueryRequest(limit=k, query=q.Query.Nearest(qv), filter=_filter(flt),
                                              params=params, with_payload=False))
        return [int(r.id) for r in res]

    def hybrid(self, qv, text: str, k: int = 10, setting: dict | None = None, candidates: int = 100) -> list[int]:
        import qdrant_edge as q

        params = q.SearchParams(hnsw_ef=(setting or {}).get("hnsw_ef"))
        req = q.QueryRequest(limit=k, query=q.Fusion.Rrf(k=60), with_payload=False, prefetches=[
            q.Prefetch(limit=candidates, query=q.TextQuery("text", text)),
            q.Prefetch(limit=candidates, query=q.Query.Nearest(qv), params=params)])
        return [int(r.id) for r in self.shard.query(req)]

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


def _filter(flt: Filter | None):
    if flt is None:
        return None
    import qdrant_edge as q

    must = []
    if flt.source is not None:
        must.append(q.FieldCondition(key="source", match=q.MatchValue(flt.source)))
    if flt.max_chars is not None:  # no integer range type: a float range works on an integer index
        must.append(q.FieldCondition(key="n_chars", range=q.RangeFloat(lt=float(flt.max_chars))))
    return q.Filter(must=must)
