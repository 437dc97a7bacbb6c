"""The interface every vector store adapter implements, and the filters they all support.

A store holds rows 0..n-1 of one vector matrix (cosine, normalised vectors) with two payload
fields, `source` (str) and `n_chars` (int) (and `text` when the payload has it: the store's own
full-text index for `hybrid`), and answers top-k searches with row numbers, so every
store is scored against the same exact search (evaluate.exact_topk). Each adapter starts what it
needs (an in-process engine, a server) in `open` and stops it in `close`: nothing is left running.

    store = base.make("lancedb", workdir)
    store.ingest(mat, payload)                # batches; the adapter's own bulk path
    store.build_index()                       # the ANN index with the adapter's build parameters
    store.search(qv, k=10, setting={"nprobes": 20}, flt=Filter(source="boolq"))
    store.disk_bytes(); store.close()

`ladder` lists the search settings from cheapest to most exact; bench.py walks it until recall@10
against exact search reaches the goal on dev queries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError

STORES = {"lancedb": "llmarch_lab.labs.rag.stores.lance:LanceStore",
          "qdrant": "llmarch_lab.labs.rag.stores.qdrant:QdrantStore",
          "pgvector": "llmarch_lab.labs.rag.stores.pgvector:PgvectorStore"}


@dataclass(frozen=True)
class Filter:
    source: str | None = None  # payload source equals this
    max_chars: int | None = None  # payload n_chars below this

    def mask(self, payload):
        """Boolean row mask of the rows this filter keeps (for the exact reference)."""
        import numpy as np

        m = np.ones(len(payload), dtype=bool)
        if self.source is not None:
            m &= (payload.source == self.source).to_numpy()
        if self.max_chars is not None:
            m &= (payload.n_chars < self.max_chars).to_numpy()
        return m

    def label(self) -> str:
        parts = ([f"source={self.source}"] if self.source else []) + ([f"n_chars<{self.max_chars}"] if self.max_chars else [])
        return " & ".join(parts) or "none"


class Store:
    name = "store"
    ladder: tuple[dict, ...] = ()

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)

    def ingest(self, mat, payload, batch: int = 10_000) -> None:
        raise NotImplementedError

    def build_index(self) -> dict:
        """Build the ANN index; returns its build parameters."""
        raise NotImplementedError

    def search(self, qv, k: int = 10, setting: dict | None = None, flt: Filter | None = None) -> list[int]:
        raise NotImplementedError

    def hybrid(self, qv, text: str, k: int = 10, setting: dict | None = None, candidates: int = 100) -> list[int]:
        """The store's own BM25 (or full-text) + dense query fused by RRF, when the payload had
        `text` at ingest; each leg takes `candidates` rows."""
        raise NotImplementedError

    def disk_bytes(self) -> int:
        """Bytes allocated on disk under the store's folder (blocks, not apparent sizes: Qdrant
        preallocates sparse files far larger than what they hold)."""
        return sum(f.stat().st_blocks * 512 for f in self.workdir.rglob("*") if f.is_file())

    def server_rss_bytes(self) -> int:
        """Resident memory of a separate server process (0 for an in-process engine)."""
        return 0

    def close(self) -> None:
        pass


def store_class(name: str) -> type[Store]:
    if name not in STORES:
        raise LabError(f"store {name!r}: valid are {', '.join(STORES)}")
    mod, cls = STORES[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def make(name: str, workdir: Path) -> Store:
    return store_class(name)(workdir)
