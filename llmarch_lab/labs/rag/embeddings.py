"""sentence-transformers embeddings with an on-disk cache keyed by (model, chunk text hash).

    from llmarch_lab.labs.rag.embeddings import CachedEmbedder
    emb = CachedEmbedder("minilm-l6", batch_size=64, normalize=True)
    vecs = emb.embed(chunks.text.tolist())   # (n, dim) float32; a second call reads the cache
    qv = emb.embed_query("what is ...")      # never cached: query latency is measured live

Query encoder (`query_encoder`): `torch` calls `SentenceTransformer.encode` (the reference);
`onnx` runs the same model exported to ONNX Runtime (rag/onnx_encoder.py: ~2.2x faster for one
query on a CPU, cosine >= 0.9999 to the reference, checked on every load); `auto` = onnx on the
CPU, torch on a GPU. Corpus chunks are always embedded with torch (batched, cached).

A sweep over retrieval modes, fusion weights or rerankers embeds each chunk once: the cache lives
under paths.cache_dir()/embeddings (LLMARCH_CACHE_DIR moves it) in a diskcache store, which is
safe for several processes at once. The key holds the model spec, its max sequence length and
the normalisation flag, so changing any of them never reads stale vectors.
"""

from __future__ import annotations

import hashlib
import time

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models

QUERY_ENCODERS = ("auto", "onnx", "torch")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedEmbedder:
    """A sentence-transformers model (alias, hub id or local path) behind a disk cache."""

    def __init__(self, spec: str = models.MINILM, device: str = "cpu", batch_size: int = 64,
                 normalize: bool = True, cache: bool = True, cache_dir=None, query_encoder: str = "auto",
                 query_threads: int = 1):
        if query_encoder not in QUERY_ENCODERS:
            raise LabError(f"query_encoder {query_encoder!r}: valid are {', '.join(QUERY_ENCODERS)}")
        self.spec, self.device, self.batch_size, self.normalize = spec, device, batch_size, normalize
        self.query_encoder, self.query_threads = query_encoder, query_threads
        self._onnx = None
        self.use_cache = cache
        self.cache_dir = cache_dir or (paths.cache_dir() / "embeddings")
        self._model = None
        self.hits = self.misses = 0
        self.encode_s = 0.0  # seconds spent computing embeddings (cache misses only)
        self.load_s = 0.0

    @property
    def model(self):
        if self._model is None:
            t0 = time.perf_counter()
            self._model = models.load_embedder(self.spec, device=self.device)
            self.load_s = time.perf_counter() - t0
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def key_prefix(self) -> str:
        return f"{self.spec}|maxlen={self.model.max_seq_length}|norm={int(self.normalize)}|"

    def _encode(self, texts: list[str], progress: bool = False):
        import numpy as np

        t0 = time.perf_counter()
        out = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                convert_to_numpy=True, show_progress_bar=progress)
        self.encode_s += time.perf_counter() - t0
        return np.asarray(out, dtype=np.float32)

    def embed(self, texts: list[str], progress: bool = True):
        """(len(texts), dim) float32 array; cached vectors are read, the rest computed and stored."""
        import numpy as np

        if not texts:
            raise LabError("nothing to embed: the text list is empty")
        if not self.use_cache:
            self.misses += len(texts)
            return self._encode(list(texts), progress)
        from diskcache import Cache

        prefix = self.key_prefix()
        keys = [prefix + text_hash(t) for t in texts]
        out: list = [None] * len(texts)
        with Cache(str(self.cache_dir)) as cache:
            for i, k in enumerate(keys):
                blob = cache.get(k)
                if blob is not None:
                    out[i] = np.frombuffer(blob, dtype=np.float32)
            todo = [i for i, v in enumerate(out) if v is None]
            self.hits += len(texts) - len(todo)
            self.misses += len(todo)
            if todo:
                vecs = self._encode([texts[i] for i in todo], progress)
                with cache.transact():  # one sqlite transaction: thousands of sets stay fast
                    for i, v in zip(todo, vecs):
                        cache.set(keys[i], v.tobytes())
                        out[i] = v
        return np.stack(out).astype(np.float32, copy=False)

    @property
    def query_backend(self) -> str:
        """The query encoder in use: onnx or torch (auto resolved by the model's device)."""
        if self.query_encoder != "auto":
            return self.query_encoder
        return "onnx" if str(self.model.device) == "cpu" else "torch"

    def prepare_query_encoder(self) -> float:
        """Load (and on first use export) the query encoder now; seconds taken."""
        if self.query_backend != "onnx" or self._onnx is not None:
            return 0.0
        from llmarch_lab.labs.rag.onnx_encoder import OnnxQueryEncoder

        self._onnx = OnnxQueryEncoder(self.model, self.spec, threads=self.query_threads, normalize=self.normalize)
        return self._onnx.load_s

    def embed_query(self, text: str):
        """One query vector, computed now (what a deployed retriever pays per request)."""
        if not text or not text.strip():
            raise LabError("query is empty: give a non-empty question")
        if self.query_backend == "onnx":
            self.prepare_query_encoder()
            return self._onnx.encode(text)
        return self.model.encode([text], normalize_embeddings=self.normalize, convert_to_numpy=True,
                                 show_progress_bar=False)[0].astype("float32")
