"""The routers' shared settings and the cached MiniLM prompt embeddings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models

ROUTERS = ("random", "rule", "minilm-lr", "knn", "confidence", "cascade")
EMBEDDER = models.MINILM
GAP_FRACS = (0.5, 0.8, 0.95)
# Price of a small-model call relative to a large one. The paper's Appendix D: GPT-4-1106 at
# $24.7 / 1M tokens vs Mixtral-8x7B at $0.24 / 1M tokens (0.24 / 24.7 ~ 0.0097).
SMALL_COST_RATIO = 0.24 / 24.7


# --------------------------------------------------------------------------------------- embeddings
_MODEL = None


def _embedder():
    global _MODEL
    if _MODEL is None:
        _MODEL = models.load_embedder(EMBEDDER, device="cpu")
    return _MODEL


def embed_cache_dir() -> Path:
    return paths.cache_dir() / "embeddings" / EMBEDDER


def embed(texts, batch_size: int = 64, cache: bool = True, progress: bool = True) -> np.ndarray:
    """MiniLM-L6 sentence embeddings, L2-normalised, float32, shape (len(texts), 384).

    Vectors are cached on disk (a diskcache store, safe for several processes, under
    paths.cache_dir()/embeddings/minilm-l6/) keyed by the sha256 of the text, so the 14k MMLU
    prompts are embedded once. Misses are encoded in chunks and stored chunk by chunk."""
    from tqdm.auto import tqdm

    texts = [str(t) for t in texts]
    if not texts:
        raise LabError("embed: the text list is empty")
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    out: list = [None] * len(texts)
    store = None
    if cache:
        from diskcache import Cache

        store = Cache(str(embed_cache_dir()))
        for i, k in enumerate(keys):
            blob = store.get(k)
            if blob is not None:
                out[i] = np.frombuffer(blob, dtype=np.float32)
    todo = [i for i, v in enumerate(out) if v is None]
    # one text may repeat: encode each distinct miss once
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(keys[i], i)
    uniq = list(first.values())
    chunk = 512
    bar = tqdm(total=len(uniq), desc=f"embed {EMBEDDER}", unit="text", disable=not progress or len(uniq) < chunk)
    try:
        for s in range(0, len(uniq), chunk):
            idx = uniq[s:s + chunk]
            vecs = _embedder().encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
            if store is not None:
                with store.transact():
                    for i, v in zip(idx, vecs):
                        store.set(keys[i], v.tobytes())
            for i, v in zip(idx, vecs):
                first[keys[i]] = v  # type: ignore[assignment]
            bar.update(len(idx))
    finally:
        bar.close()
        if store is not None:
            store.close()
    for i in todo:
        out[i] = first[keys[i]]
    return np.stack(out).astype(np.float32, copy=False)
