"""MiniLM (any sentence-transformers model) embeddings of texts, cached on disk by text hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.common.files import atomic_path

EMBED_BATCH = 128


def store_dir() -> Path:
    d = paths.cache_dir() / "cost-cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def embedder_tag(spec: str) -> str:
    """A file-safe tag for an embedder spec: the alias itself, or a hash of a local folder's weights."""
    if spec == "minilm-l6":
        return spec
    p = Path(spec).expanduser()
    if not p.is_dir():
        raise LabError(f"embedder {spec!r}: not 'minilm-l6' and not a local sentence-transformers folder")
    h = hashlib.sha1(str(p.resolve()).encode())
    for f in sorted(p.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return "ft-" + h.hexdigest()[:12]


_MODELS: dict[str, object] = {}
_STORES: dict[str, "EmbeddingStore"] = {}


def load_model(spec: str):
    """The sentence-transformers model for an embedder spec, loaded once per process."""
    if spec not in _MODELS:
        from llmarch_lab.assets import models

        _MODELS[spec] = models.load_embedder(spec, device="cpu")
    return _MODELS[spec]


class EmbeddingStore:
    """Normalized embeddings of texts, persisted in the cache dir per embedder, so the dev file is
    embedded once (~11 min on 2 cores for its 103k texts) and every later sweep reads it in a second.

    Hand-written rather than a vector DB: it is a plain text-hash -> vector memo, not a search index."""

    def __init__(self, spec: str):
        import numpy as np

        self.spec = spec
        self.path = store_dir() / f"emb-{embedder_tag(spec)}.npz"
        self._index: dict[bytes, int] = {}
        self._vecs = np.zeros((0, 384), dtype=np.float32)
        if self.path.is_file():
            z = np.load(self.path)
            self._vecs = z["vecs"]
            self._index = {bytes(k): i for i, k in enumerate(z["keys"])}

    @classmethod
    def get(cls, spec: str) -> "EmbeddingStore":
        if spec not in _STORES:
            _STORES[spec] = cls(spec)
        return _STORES[spec]

    def encode(self, texts, progress: bool = False, save: bool = True):
        """(n, d) float32 normalized embeddings; texts not in the store are embedded in batches."""
        import numpy as np

        texts = list(texts)
        keys = [_text_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._index))
        if missing:
            model = load_model(self.spec)
            new = model.encode(missing, batch_size=EMBED_BATCH, normalize_embeddings=True,
                               show_progress_bar=progress, convert_to_numpy=True).astype(np.float32)
            if self._vecs.shape[0] == 0:
                self._vecs = np.zeros((0, new.shape[1]), dtype=np.float32)
            base = self._vecs.shape[0]
            self._vecs = np.concatenate([self._vecs, new])
            for i, t in enumerate(missing):
                self._index[_text_key(t)] = base + i
            if save:
                self.save()
        if not texts:
            return np.zeros((0, self._vecs.shape[1] or 384), dtype=np.float32)
        return self._vecs[[self._index[k] for k in keys]]

    def save(self):
        import numpy as np

        keys = np.zeros((len(self._index), 16), dtype=np.uint8)
        for k, i in self._index.items():
            keys[i] = np.frombuffer(k, dtype=np.uint8)
        with atomic_path(self.path, suffix=".npz") as tmp:
            np.savez(tmp, keys=keys, vecs=self._vecs)


def embed(texts, embedder: str = "minilm-l6", progress: bool = False):
    return EmbeddingStore.get(embedder).encode(texts, progress=progress)
