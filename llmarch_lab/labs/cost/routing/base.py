"""The routers' shared settings and the cached MiniLM prompt embeddings."""

from __future__ import annotations

import numpy as np

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.llm import embeddings

ROUTERS = ("random", "rule", "minilm-lr", "knn", "confidence", "cascade")
EMBEDDER = models.MINILM
GAP_FRACS = (0.5, 0.8, 0.95)
# Price of a small-model call relative to a large one. The paper's Appendix D: GPT-4-1106 at
# $24.7 / 1M tokens vs Mixtral-8x7B at $0.24 / 1M tokens (0.24 / 24.7 ~ 0.0097).
SMALL_COST_RATIO = 0.24 / 24.7


# --------------------------------------------------------------------------------------- embeddings
def embed(texts, batch_size: int = 64, cache: bool = True, progress: bool = True) -> np.ndarray:
    """MiniLM-L6 sentence embeddings, L2-normalised, float32, shape (len(texts), 384), through the
    one embedding service (llm/embeddings.py: its disk cache, so the 14k MMLU prompts are
    embedded once)."""
    texts = [str(t) for t in texts]
    if not texts:
        raise LabError("embed: the text list is empty")
    if not cache:
        return embeddings.Embedder(EMBEDDER, batch_size=batch_size, cache=False).embed(texts, progress=progress)
    return embeddings.embed(texts, EMBEDDER, batch_size=batch_size, progress=progress)
