"""The cache itself: SemanticCache (cosine threshold, verifier, TTL and size-bounded LRU eviction)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from cachetools import TTLCache

from llmarch_lab import LabError
from llmarch_lab.labs.cost.cache.embeddings import EMBED_BATCH, load_model
from llmarch_lab.labs.cost.cache.grid import default_verifier
from llmarch_lab.labs.cost.cache.index import CacheConfig, decide, make_index
from llmarch_lab.labs.cost.cache.verifier import PairVerifier, load_verifier


@dataclass
class Hit:
    key: str
    answer: object
    similarity: float
    verifier_prob: float | None
    latency_ms: float


@dataclass
class CacheStats:
    puts: int = 0
    gets: int = 0
    hits: int = 0
    misses: int = 0
    exact_hits: int = 0
    evicted: int = 0
    expired: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hit_rate"] = self.hits / self.gets if self.gets else 0.0
        return d


class _Entries(TTLCache):
    """cachetools' TTL + LRU cache of key -> (id, answer) that tells its owner what it drops, so
    the vector index drops the same entries."""

    def __init__(self, maxsize, ttl, timer, on_drop):
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self._on_drop = on_drop

    def popitem(self):  # LRU eviction when full
        key, value = super().popitem()
        self._on_drop(key, value, "evicted")
        return key, value

    def expire(self, time=None):
        gone = super().expire(time)
        for key, value in gone:
            self._on_drop(key, value, "expired")
        return gone


class SemanticCache:
    """put(query, answer) / get(query) -> Hit | None, over MiniLM embeddings in FAISS or LanceDB.

    An exact repeat of a stored key is always a hit (a dict lookup, before any embedding)."""

    def __init__(self, config: CacheConfig | None = None, clock=time.monotonic, verifier: "PairVerifier | None" = None):
        config = config or CacheConfig()
        self.config = config
        self.stats = CacheStats()
        self._model = load_model(config.embedder)
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self._dim = int(dim() or 384)
        self._index = make_index(config.index, self._dim)
        self._keys: dict[int, str] = {}
        self._next_id = 0
        self.verifier = verifier
        if config.verifier == "lr" and verifier is None:
            self.verifier = load_verifier(config.verifier_path) if config.verifier_path else default_verifier()
        maxsize = config.max_entries or 10**12
        ttl = float(config.ttl_s) if config.ttl_s else float("inf")
        self._entries = _Entries(maxsize, ttl, clock, self._drop)

    def __len__(self):
        self._entries.expire()
        return len(self._entries)

    def _drop(self, key, value, why):
        self._index.remove([value[0]])
        self._keys.pop(value[0], None)
        setattr(self.stats, why, getattr(self.stats, why) + 1)

    def _encode(self, texts):
        import numpy as np

        return np.asarray(self._model.encode(list(texts), batch_size=EMBED_BATCH, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def put(self, query: str, answer) -> None:
        self.put_many([query], [answer])

    def put_many(self, queries, answers, vecs=None, progress: bool = False) -> None:
        """Store many entries; `vecs` (normalized embeddings of `queries`) skips the embedding."""
        self._entries.expire()
        queries, answers = list(queries), list(answers)
        new = {}
        for q, a in zip(queries, answers):
            if not isinstance(q, str):
                raise LabError(f"cache key must be a string, got {type(q).__name__}")
            self.stats.puts += 1
            q = q.strip()
            if q in self._entries:  # same key: refresh the answer and its TTL, keep the vector
                self._entries[q] = (self._entries[q][0], a)
            elif q in new:
                new[q] = a
            else:
                new[q] = a
        if not new:
            return
        todo = list(new)
        if vecs is None:
            vecs = self._encode(todo)
        else:
            pos = {q.strip(): i for i, q in enumerate(queries)}
            vecs = vecs[[pos[q] for q in todo]]
        ids = list(range(self._next_id, self._next_id + len(todo)))
        self._next_id += len(todo)
        self._index.add(ids, vecs)
        for i, q in zip(ids, todo):
            self._keys[i] = q
            self._entries[q] = (i, new[q])  # may evict the LRU entry (and drop it from the index)

    def get(self, query: str) -> Hit | None:
        """The real single-query path: exact lookup, embed, search, verify. Latency includes all."""
        t0 = time.perf_counter()
        out = self._lookup([query], None)[0]
        if out is not None:
            out.latency_ms = (time.perf_counter() - t0) * 1e3
        return out

    def get_many(self, queries, vecs=None) -> list[Hit | None]:
        """Batch lookups (the same rule as get); `vecs` skips the embedding. latency_ms is the
        batch time per query, not a single-query latency: measure that with get()."""
        t0 = time.perf_counter()
        out = self._lookup(list(queries), vecs)
        per = (time.perf_counter() - t0) * 1e3 / max(len(out), 1)
        for h in out:
            if h is not None:
                h.latency_ms = per
        return out

    def _lookup(self, queries, vecs):
        import numpy as np

        self._entries.expire()
        out: list[Hit | None] = [None] * len(queries)
        rest = []
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise LabError(f"cache query must be a string, got {type(q).__name__}")
            self.stats.gets += 1
            e = self._entries.get(q.strip())  # get() refreshes the LRU order
            if e is not None:
                out[i] = Hit(q.strip(), e[1], 1.0, 1.0 if self.verifier else None, 0.0)
                self.stats.exact_hits += 1
            else:
                rest.append(i)
        if rest and len(self._index):
            qv = self._encode([queries[i] for i in rest]) if vecs is None else np.asarray(vecs)[rest]
            k = self.config.top_k if self.verifier is not None else 1
            sims, ids = self._index.search(qv, k)
            texts = [[self._keys.get(int(x)) if x >= 0 else None for x in row] for row in ids]
            probs = None
            if self.verifier is not None:
                probs = np.full(sims.shape, np.nan)  # nothing over the cosine gate: a miss, left unscored
                if (sims >= self.config.threshold).any():
                    probs = self.verifier.predict_lists([queries[i] for i in rest], texts, sims, gate=self.config.threshold)
            pick = decide(sims, probs, self.config.threshold, self.config.verifier_threshold if probs is not None else None)
            for r, i in enumerate(rest):
                j = int(pick[r])
                if j < 0 or texts[r][j] is None:
                    continue
                key = texts[r][j]
                e = self._entries.get(key)
                if e is None:
                    continue
                out[i] = Hit(key, e[1], float(sims[r, j]), float(probs[r, j]) if probs is not None else None, 0.0)
        for h in out:
            if h is None:
                self.stats.misses += 1
            else:
                self.stats.hits += 1
        return out
