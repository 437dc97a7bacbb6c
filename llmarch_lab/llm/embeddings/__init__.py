"""The one embedding service (service.py: models, disk cache, batch and single-query paths) and
its single-query ONNX encoder (onnx.py). This package re-exports the service's public names.

    from llmarch_lab.llm.embeddings import Embedder, embed
"""

from llmarch_lab.llm.embeddings.service import (
    CHUNK,
    QUERY_ENCODERS,
    Embedder,
    embed,
    embedder,
    load_model,
    native_bf16,
    spec_tag,
    text_hash,
)

__all__ = ["CHUNK", "Embedder", "embed", "embedder", "load_model", "native_bf16", "QUERY_ENCODERS", "spec_tag", "text_hash"]
