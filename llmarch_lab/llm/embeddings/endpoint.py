"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint behind the service's disk cache.

    from llmarch_lab.llm.embeddings.endpoint import EndpointEmbedder, serve_minilm
    with serve_minilm(log_path) as eng:                      # llama-server --embedding on MiniLM's GGUF
        emb = EndpointEmbedder(eng.endpoint(), tag="llama-server:minilm-l6", tokenizer=minilm_tokenizer)
        vecs = emb.embed(texts)                              # cached, resumable, like Embedder

The cache, its key format and the batching are Embedder's (service.py); only the encoder differs:
batches of `batch_size` texts per request, vectors L2-normalised here. With a `tokenizer` the
texts go as token ids truncated to `max_tokens` (the OpenAI API takes token arrays): llama-server
refuses a text longer than its batch instead of truncating it, and sentence-transformers
truncates at the model's 256 word pieces, so the same ids give the same vectors (cosine 0.99999).
"""

from __future__ import annotations

import time

from llmarch_lab import LabError
from llmarch_lab.llm.embeddings.service import Embedder


class EndpointEmbedder(Embedder):
    def __init__(self, endpoint, tag: str, batch_size: int = 32, normalize: bool = True, tokenizer=None,
                 max_tokens: int = 256, cache: bool = True):
        super().__init__(spec=tag, batch_size=batch_size, normalize=normalize, cache=cache, query_encoder="torch")
        self.endpoint, self.tokenizer_, self.max_tokens = endpoint, tokenizer, max_tokens
        self._dim = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self._encode(["dimension probe"])[0])
        return self._dim

    def key_prefix(self) -> str:
        ids = f"ids{self.max_tokens}" if self.tokenizer_ is not None else "text"
        return f"endpoint:{self.spec}|{ids}|norm={int(self.normalize)}|"

    def _encode(self, texts: list[str], progress: bool = False):
        import numpy as np

        t0 = time.perf_counter()
        out = []
        for s in range(0, len(texts), self.batch_size):
            part = texts[s:s + self.batch_size]
            if self.tokenizer_ is not None:
                part = [self.tokenizer_(t, truncation=True, max_length=self.max_tokens)["input_ids"] for t in part]
            out += self.endpoint.embeddings(part)
        mat = np.asarray(out, dtype=np.float32)
        if self.normalize:
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            if (norms == 0).any():
                raise LabError(f"endpoint {self.endpoint.base_url}: a zero vector came back")
            mat = mat / norms
        self.encode_s += time.perf_counter() - t0
        return mat

    def embed_query(self, text: str):
        if not text or not text.strip():
            raise LabError("query is empty: give a non-empty question")
        return self._encode([text])[0]


def serve_minilm(log_path, slots: int = 2, threads: int = 2):
    """llama-server in embedding mode (mean pooling) on MiniLM's GGUF (`make model-minilm-gguf`)."""
    from llmarch_lab.assets import gguf_convert
    from llmarch_lab.llm import engines

    return engines.launch("llama-server", str(gguf_convert.minilm_gguf()), log_path=log_path, name="minilm-l6",
                          max_model_len=512, threads=threads, parallel=slots,
                          extra_args=["--embedding", "--pooling", "mean", "--ubatch-size", "512"])
