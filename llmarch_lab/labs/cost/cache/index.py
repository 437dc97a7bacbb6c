"""Cache configuration (CacheConfig), the FAISS and LanceDB indexes, the hit decision, index latency."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from llmarch_lab import LabError

INDEXES = ("faiss", "lancedb")
VERIFIERS = (None, "lr")


@dataclass(frozen=True)
class CacheConfig:
    """One cache configuration. `threshold` is the cosine gate; with `verifier="lr"` each of the
    `top_k` nearest entries over the gate is scored by the calibrated pair verifier and the best
    one is served when its probability is >= `verifier_threshold`. `verifier_path` names a saved
    verifier (None: the default one, trained on the dev pairs, see `default_verifier`)."""

    embedder: str = "minilm-l6"
    index: str = "faiss"
    threshold: float = 0.9
    verifier: str | None = None
    verifier_threshold: float = 0.5
    top_k: int = 3
    ttl_s: float | None = None
    max_entries: int | None = None
    verifier_path: str | None = None

    def __post_init__(self):
        if not isinstance(self.embedder, str) or not self.embedder:
            raise LabError(f"CacheConfig.embedder: a non-empty string, got {self.embedder!r}")
        if self.index not in INDEXES:
            raise LabError(f"CacheConfig.index {self.index!r}: valid are {', '.join(INDEXES)}")
        if not -1.0 <= float(self.threshold) <= 1.0:
            raise LabError(f"CacheConfig.threshold {self.threshold!r}: a cosine in [-1, 1]")
        if self.verifier not in VERIFIERS:
            raise LabError(f"CacheConfig.verifier {self.verifier!r}: valid are None, 'lr'")
        if not 0.0 <= float(self.verifier_threshold) <= 1.0:
            raise LabError(f"CacheConfig.verifier_threshold {self.verifier_threshold!r}: a probability in [0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise LabError(f"CacheConfig.top_k {self.top_k!r}: an integer >= 1")
        if self.ttl_s is not None and not float(self.ttl_s) > 0:
            raise LabError(f"CacheConfig.ttl_s {self.ttl_s!r}: None or > 0 seconds")
        if self.max_entries is not None and (not isinstance(self.max_entries, int) or self.max_entries < 1):
            raise LabError(f"CacheConfig.max_entries {self.max_entries!r}: None or an integer >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **kw) -> "CacheConfig":
        return replace(self, **kw)


class FaissIndex:
    """Exact inner product (= cosine on normalized vectors) with ids, so entries can be evicted."""

    def __init__(self, dim: int = 384):
        import faiss

        self._ix = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self):
        return int(self._ix.ntotal)

    def add(self, ids, vecs):
        import numpy as np

        self._ix.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids):
        import numpy as np

        if len(ids):
            self._ix.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, vecs, k: int):
        """(sims, ids), both (n, k); id -1 where there is no k-th entry."""
        import numpy as np

        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self._ix.d)
        if len(self) == 0:
            return np.full((len(vecs), k), -1.0, np.float32), np.full((len(vecs), k), -1, np.int64)
        if len(vecs) < 20:
            # faiss scans a few queries with OpenMP; on 2 busy cores its threads spin-wait: 1.7 ms
            # p50 on 19k entries with one thread against 20.7 ms with two (measured here)
            import faiss

            n = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._ix.search(vecs, k)
            finally:
                faiss.omp_set_num_threads(n)
        return self._ix.search(vecs, k)


class LanceIndex:
    """A LanceDB table in a temporary folder, searched by cosine distance (flat scan, no ANN index:
    the same exact answers as FaissIndex, so the two compare on latency only)."""

    def __init__(self, dim: int = 384):
        import tempfile

        import lancedb

        self.dim = dim
        self._tmp = tempfile.TemporaryDirectory(prefix="llmarch-lance-")
        self._db = lancedb.connect(self._tmp.name)
        self._t = None
        self._n = 0

    def __len__(self):
        return self._n

    def add(self, ids, vecs):
        import numpy as np
        import pyarrow as pa

        vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self.dim)
        data = pa.table({"id": pa.array(np.asarray(ids, dtype=np.int64)),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), self.dim)})
        if self._t is None:
            self._t = self._db.create_table("cache", data)
        else:
            self._t.add(data)
        self._n += len(vecs)

    def remove(self, ids):
        if len(ids) and self._t is not None:
            self._t.delete(f"id IN ({', '.join(str(int(i)) for i in ids)})")
            self._n -= len(ids)

    def search(self, vecs, k: int):
        import numpy as np

        vecs = np.asarray(vecs, dtype=np.float32).reshape(-1, self.dim)
        sims = np.full((len(vecs), k), -1.0, np.float32)
        out = np.full((len(vecs), k), -1, np.int64)
        if self._t is None or self._n == 0:
            return sims, out
        for r, v in enumerate(vecs):
            res = self._t.search(v).distance_type("cosine").limit(k).select(["id"]).to_arrow()
            n = res.num_rows
            out[r, :n] = res.column("id").to_numpy()
            sims[r, :n] = 1.0 - res.column("_distance").to_numpy()
        return sims, out


def make_index(kind: str, dim: int = 384):
    return FaissIndex(dim) if kind == "faiss" else LanceIndex(dim)


def decide(sims, probs, threshold: float, verifier_threshold: float | None):
    """The cache's serving rule on (n, k) candidate similarities (and verifier probabilities, or
    None): index of the served candidate per row, or -1 for a miss."""
    import numpy as np

    sims = np.asarray(sims, dtype=np.float64)
    ok = sims >= threshold
    if probs is None:
        return np.where(ok[:, 0], 0, -1)
    score = np.where(ok & ~np.isnan(probs), probs, -1.0)
    j = score.argmax(axis=1)
    return np.where(score[np.arange(len(score)), j] >= verifier_threshold, j, -1)


# --------------------------------------------------------------------------------------------
# Index latency: FAISS vs LanceDB
# --------------------------------------------------------------------------------------------

def index_latency(vecs, n_queries: int = 200, k: int = 3, seed: int = 0) -> dict:
    """Single-query search latency (ms) of FaissIndex and LanceIndex holding `vecs`; queries are
    entries plus noise (renormalized). Also checks both return the same nearest entry."""
    import numpy as np

    from llmarch_lab.common import stats

    rng = np.random.default_rng(seed)
    q = vecs[rng.choice(len(vecs), n_queries, replace=False)] + rng.normal(0, 0.03, (n_queries, vecs.shape[1]))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    out, tops = {"n_entries": int(len(vecs)), "n_queries": n_queries, "k": k}, {}
    for kind in INDEXES:
        ix = make_index(kind, vecs.shape[1])
        t0 = time.perf_counter()
        ix.add(np.arange(len(vecs)), vecs)
        out[f"{kind}_build_s"] = round(time.perf_counter() - t0, 3)
        ix.search(q[:2], k)  # warm-up
        lat, top = [], []
        for v in q:
            t0 = time.perf_counter()
            _, ids = ix.search(v[None], k)
            lat.append((time.perf_counter() - t0) * 1e3)
            top.append(int(ids[0, 0]))
        out.update(stats.percentiles(lat, f"{kind}_ms"))
        tops[kind] = top
    out["same_top1_share"] = float(np.mean(np.array(tops["faiss"]) == np.array(tops["lancedb"])))
    return out
