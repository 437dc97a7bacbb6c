"""The cost cache's embeddings: an in-process memo over the one embedding service (llm/embeddings.py).

The dev file's 103k texts are embedded once into the service's disk cache (~11 min on 2 cores);
later sweeps read them from there. The service stores each chunk of vectors (llm/embeddings CHUNK
texts) in one transaction as soon as it is computed, so an interrupted run keeps every finished
chunk and the next run computes only the rest. The memo keeps the vectors this process has used,
so a GPTCache lookup of a known text costs a dict access, as a live cache's embedding call would
not hide.
"""

from __future__ import annotations

from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.llm import embeddings

EMBED_BATCH = 128


def store_dir() -> Path:
    """Where the cost cache keeps its fitted verifiers."""
    d = paths.cache_dir() / "cost-cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def embedder_tag(spec: str) -> str:
    """A file-safe tag for an embedder spec: the alias itself, or a hash of a local folder's weights."""
    if spec != "minilm-l6" and not Path(spec).expanduser().is_dir():
        raise LabError(f"embedder {spec!r}: not 'minilm-l6' and not a local sentence-transformers folder")
    return embeddings.spec_tag(spec)


def load_model(spec: str):
    """The sentence-transformers model for an embedder spec, loaded once per process."""
    embedder_tag(spec)
    return embeddings.load_model(spec, "cpu")


_STORES: dict[str, "EmbeddingStore"] = {}


class EmbeddingStore:
    """Normalized embeddings of texts for one embedder: memo in memory, disk through llm/embeddings."""

    def __init__(self, spec: str):
        embedder_tag(spec)
        self.spec = spec
        self._memo: dict[str, object] = {}

    @classmethod
    def get(cls, spec: str) -> "EmbeddingStore":
        if spec not in _STORES:
            _STORES[spec] = cls(spec)
        return _STORES[spec]

    def encode(self, texts, progress: bool = False):
        """(n, d) float32 normalized embeddings; texts not seen yet go to the embedding service."""
        import numpy as np

        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            vecs = embeddings.embedder(self.spec, EMBED_BATCH).embed(missing, progress=progress)
            self._memo.update(zip(missing, vecs))
        if not texts:
            return np.zeros((0, embeddings.embedder(self.spec, EMBED_BATCH).dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])

    def uncached(self, texts) -> int:
        """How many distinct texts are neither in this memo nor in the service's disk cache (the
        ones encode() would compute). Loads the model: its max length is part of the cache key."""
        from diskcache import Cache

        emb = embeddings.embedder(self.spec, EMBED_BATCH)
        prefix = emb.key_prefix()
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        with Cache(str(emb.cache_dir)) as cache:
            return sum(prefix + embeddings.text_hash(t) not in cache for t in todo)


def embed(texts, embedder: str = "minilm-l6", progress: bool = False):
    return EmbeddingStore.get(embedder).encode(texts, progress=progress)
