"""The one embedding service: sentence-transformers models behind one on-disk cache format.

    from llmarch_lab.llm.embeddings import Embedder, embed   # (this package re-exports them)
    emb = Embedder("minilm-l6", batch_size=64, normalize=True)
    vecs = emb.embed(chunks.text.tolist())   # (n, dim) float32; a second call reads the cache
    qv = emb.embed_query("what is ...")      # never cached: query latency is measured live
    embed(texts, "minilm-l6")                # the same through one Embedder per process and spec

RAG chunks, the cost lab's cache texts and router prompts all go through it: one model load per
process and spec (`load_model`), one cache, one key format, batched misses in chunks with a
progress bar, each distinct text encoded once.

Query encoder (`query_encoder`): `torch` calls `SentenceTransformer.encode` (the reference);
`onnx` runs the same model exported to ONNX Runtime (llm/embeddings/onnx.py: ~2.2x faster for one
query on a CPU, cosine >= 0.9999 to the reference, checked on every load); `auto` = onnx on the
CPU, torch on a GPU. Corpus chunks are always embedded with torch (batched, cached), in fp32 or,
with `precision="bf16"`, under bf16 autocast: faster on a CPU with native bf16 (AVX512-BF16
here; `native_bf16()`), cosine >= 0.9999 to fp32 (checked on first use), cached under its own key.

A sweep over retrieval modes, fusion weights or rerankers embeds each chunk once: the cache lives
under paths.cache_dir()/embeddings (LLMARCH_CACHE_DIR moves it) in a diskcache store, which is
safe for several processes at once. The key holds the model's tag (the alias or hub id; for a
local folder a hash of its path and weight files, so a fine-tuned model never reads stale
vectors), its max sequence length and the normalisation flag, then the sha256 of the text.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models

QUERY_ENCODERS = ("auto", "onnx", "torch")
PRECISIONS = ("fp32", "bf16")
BF16_MIN_COSINE = 0.9999  # a bf16 encoder must agree with fp32 this well on the probes, or it is refused
CHUNK = 512  # misses encoded and stored per step (a progress bar step, one cache transaction)

_MODELS: dict[tuple[str, str], object] = {}
_EMBEDDERS: dict[tuple, "Embedder"] = {}
_LOCK = threading.Lock()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def spec_tag(spec: str) -> str:
    """The model's part of a cache key: the spec itself, or for a local folder a hash of its path
    and its weight files' names, sizes and times (a fine-tuned model gets new vectors)."""
    p = Path(spec).expanduser()
    if not p.is_dir():
        return spec
    h = hashlib.sha1(str(p.resolve()).encode())
    for f in sorted(p.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return "ft-" + h.hexdigest()[:12]


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 is then faster, else slower."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def load_model(spec: str = models.MINILM, device: str = "cpu"):
    """The sentence-transformers model for a spec, loaded once per process and device."""
    with _LOCK:
        if (spec, device) not in _MODELS:
            _MODELS[(spec, device)] = models.load_embedder(spec, device=device)
        return _MODELS[(spec, device)]


def embedder(spec: str = models.MINILM, batch_size: int = 64, normalize: bool = True) -> "Embedder":
    """One Embedder per process for (spec, batch size, normalisation), on the CPU."""
    key = (spec, batch_size, normalize)
    with _LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = Embedder(spec, batch_size=batch_size, normalize=normalize)
        return _EMBEDDERS[key]


def embed(texts, spec: str = models.MINILM, batch_size: int = 64, progress: bool = False):
    """(len(texts), dim) float32 normalised vectors through the process's Embedder for `spec`."""
    return embedder(spec, batch_size).embed([str(t) for t in texts], progress=progress)


class Embedder:
    """A sentence-transformers model (alias, hub id or local path) behind the disk cache."""

    def __init__(self, spec: str = models.MINILM, device: str = "cpu", batch_size: int = 64,
                 normalize: bool = True, cache: bool = True, cache_dir=None, query_encoder: str = "auto",
                 query_threads: int = 1, precision: str = "fp32"):
        if query_encoder not in QUERY_ENCODERS:
            raise LabError(f"query_encoder {query_encoder!r}: valid are {', '.join(QUERY_ENCODERS)}")
        if precision not in PRECISIONS:
            raise LabError(f"precision {precision!r}: valid are {', '.join(PRECISIONS)}")
        self.precision, self.bf16_cosine = precision, None
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
            self._model = load_model(self.spec, self.device)
            self.load_s = time.perf_counter() - t0
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def key_prefix(self) -> str:
        bf16 = "bf16|" if self.precision == "bf16" else ""  # bf16 vectors differ (slightly): never mixed with fp32
        return f"{spec_tag(self.spec)}|maxlen={self.model.max_seq_length}|norm={int(self.normalize)}|{bf16}"

    def _autocast(self):
        import contextlib

        import torch

        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(str(self.model.device).split(":")[0], dtype=torch.bfloat16)

    def check_bf16(self) -> float:
        """The lowest cosine between bf16 and fp32 vectors of the probe sentences (bf16 batches run
        faster on a CPU with native bf16, e.g. AVX512-BF16; benchmarks/rag_embedders.py's minilm-l6@bf16
        row measures by how much); refuses below BF16_MIN_COSINE."""
        if self.bf16_cosine is None:
            from llmarch_lab.llm.embeddings.onnx import PROBES

            kw = dict(normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            ref = self.model.encode(list(PROBES), **kw)
            with self._autocast():
                got = self.model.encode(list(PROBES), **kw)
            self.bf16_cosine = float((ref * got).sum(axis=1).min())
            if not self.bf16_cosine >= BF16_MIN_COSINE:
                raise LabError(f"precision bf16: {self.spec} disagrees with fp32 (cosine {self.bf16_cosine:.5f} < "
                               f"{BF16_MIN_COSINE}); use precision fp32")
        return self.bf16_cosine

    def _encode(self, texts: list[str], progress: bool = False):
        import numpy as np

        if self.precision == "bf16":
            self.check_bf16()
        t0 = time.perf_counter()
        with self._autocast():
            out = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=progress)
        out = np.asarray(out, dtype=np.float32)
        if self.normalize and self.precision == "bf16":  # bf16 norms are 1 +- 0.004: normalise again in fp32
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        self.encode_s += time.perf_counter() - t0
        return out

    def embed(self, texts: list[str], progress: bool = True):
        """(len(texts), dim) float32 array; cached vectors are read, the rest computed (each distinct
        text once, CHUNK at a time with a progress bar) and stored chunk by chunk."""
        import numpy as np

        if not texts:
            raise LabError("nothing to embed: the text list is empty")
        if not self.use_cache:
            self.misses += len(texts)
            return self._encode(list(texts), progress)
        from diskcache import Cache

        prefix = self.key_prefix()
        keys = [prefix + text_hash(t) for t in texts]
        distinct = dict(zip(keys, texts))  # key -> text, in first-seen order
        found: dict[str, object] = {}
        with Cache(str(self.cache_dir)) as cache:
            for k in distinct:
                blob = cache.get(k)
                if blob is not None:
                    found[k] = np.frombuffer(blob, dtype=np.float32)
            hit = sum(k in found for k in keys)
            self.hits, self.misses = self.hits + hit, self.misses + len(keys) - hit
            missing = [(k, t) for k, t in distinct.items() if k not in found]
            self._fill(cache, missing, found, progress and len(missing) >= CHUNK)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _fill(self, cache, items: list[tuple[str, str]], found: dict, progress: bool) -> None:
        from tqdm.auto import tqdm

        items = sorted(items, key=lambda kt: len(kt[1]))  # similar lengths per batch: less padding
        with tqdm(total=len(items), desc=f"embed {self.spec}", unit="text", disable=not progress) as bar:
            for s in range(0, len(items), CHUNK):
                part = items[s:s + CHUNK]
                vecs = self._encode([t for _, t in part])
                with cache.transact():  # one sqlite transaction: thousands of sets stay fast
                    for (k, _), v in zip(part, vecs):
                        cache.set(k, v.tobytes())
                        found[k] = v
                bar.update(len(part))

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
        from llmarch_lab.llm.embeddings.onnx import OnnxQueryEncoder

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
