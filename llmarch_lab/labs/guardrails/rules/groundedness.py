"""The RAG groundedness check: each answer sentence scored against the retrieved context
(MiniLM embeddings, or lexical containment)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules.text import as_text, content_tokens, split_sentences


def lexical_support(sentence, context_tokens: set[str]) -> float:
    """Fraction of the sentence's content tokens found in the context (containment, not Jaccard:
    a short sentence fully drawn from a long context should score 1). Hand-written rather than
    a rapidfuzz ratio: a ratio is symmetric and punishes the length gap to a long context."""
    toks = content_tokens(sentence)
    return len(toks & context_tokens) / len(toks) if toks else 1.0


@dataclass
class SentenceScore:
    sentence: str
    span: tuple[int, int]
    embedding: float | None  # max cosine to a context chunk; None with method="lexical"
    lexical: float
    score: float  # the one the threshold applies to
    supported: bool
    best_chunk: int | None  # index into the chunk list of the best-matching chunk


@dataclass
class GroundednessResult:
    grounded: bool
    fraction: float  # supported / scored sentences (1.0 when there is nothing to score)
    answer_score: float  # the k-th best sentence score, k = ceil(min_fraction * n): grounded iff >= threshold
    threshold: float
    method: str
    sentences: list[SentenceScore] = field(default_factory=list)
    truncated: bool = False  # the answer had more than max_sentences sentences; the rest count unsupported

    def table(self):
        import pandas as pd

        return pd.DataFrame([vars(s) for s in self.sentences])


# Chosen on half A of evaluate_groundedness(200, seed=0) (random negatives, sentence chunks,
# min_fraction=1): the answer's weakest sentence must reach it. Recalibrate for other data.
DEFAULT_THRESHOLDS = {"embedding": 0.33, "lexical": 0.12}
_EMBEDDER: list = [None]


class Groundedness:
    """Is every sentence of an answer (or a fraction of them) supported by the retrieved context?

    Each answer sentence is scored against context chunks (the passages split into sentences, or
    whole passages with chunking="passage"): `embedding` = max cosine similarity of
    all-MiniLM-L6-v2 embeddings, `lexical` = content-token containment in the whole context.
    method="auto" uses the embedding, and the lexical score when the embedder cannot be loaded.
    Sentences with no content word (emoji, "OK.") are not claims and are not scored."""

    def __init__(self, embedder=None, method: str = "auto", threshold: float | None = None,
                 min_fraction: float = 1.0, chunking: str = "sentence", max_sentences: int = 256,
                 threads: int = 1):
        if method not in ("auto", "embedding", "lexical"):
            raise LabError(f"groundedness method {method!r}: use auto, embedding or lexical")
        if chunking not in ("sentence", "passage"):
            raise LabError(f"groundedness chunking {chunking!r}: use sentence or passage")
        if not 0 < float(min_fraction) <= 1:
            raise LabError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        self._embedder, self.chunking, self.min_fraction = embedder, chunking, float(min_fraction)
        self.max_sentences, self.threads = max_sentences, threads  # torch threads while encoding (0: as is)
        if method == "auto":
            method = "embedding" if self._load() is not None else "lexical"
        self.method = method
        self.threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
        self._cache: dict[str, object] = {}

    def _load(self):
        if self._embedder is None:
            if _EMBEDDER[0] is None:
                from llmarch_lab.assets import models

                try:
                    _EMBEDDER[0] = models.load_embedder()
                except (LabError, OSError, ImportError):
                    return None
            self._embedder = _EMBEDDER[0]
        return self._embedder

    def encode(self, texts: list[str]):
        """Unit-normalised embeddings, cached per text (an evaluation re-scores the same contexts)."""
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            emb = self._load()
            if emb is None:
                raise LabError("groundedness: the embedder (all-MiniLM-L6-v2) could not be loaded; use method='lexical'")
            from llmarch_lab.llm.local import torch_threads

            # One thread by default: on the shared 2-core machine two spin-waiting torch threads
            # encoded 149 sentences in 6.5-7.6 s, one thread in 3.7-5.4 s. One sentence is capped
            # at 2000 chars: the model reads 256 word pieces anyway.
            with torch_threads(self.threads):
                vecs = emb.encode([m[:2000] for m in missing], batch_size=64, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
            self._cache.update(zip(missing, vecs))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def chunks(self, contexts) -> list[str]:
        if isinstance(contexts, (str, bytes, bytearray, memoryview)) or not isinstance(contexts, Iterable):
            contexts = [contexts]
        passages = [as_text(c) for c in contexts]
        if self.chunking == "passage":
            return [p for p in passages if p.strip()]
        return [s for p in passages for s, _, _ in split_sentences(p)]

    def check(self, answer, contexts) -> GroundednessResult:
        """Score every sentence of `answer` against `contexts` (a list of passages, or one)."""
        sents = [s for s in split_sentences(answer) if content_tokens(s[0])]
        truncated = len(sents) > self.max_sentences
        scored = sents[: self.max_sentences]
        chunks = self.chunks(contexts)
        ctx_tokens = content_tokens(" ".join(chunks))
        lex = [lexical_support(s, ctx_tokens) for s, _, _ in scored]
        if self.method == "embedding" and scored and chunks:
            sim = self.encode([s for s, _, _ in scored]) @ self.encode(chunks).T
            best = sim.argmax(axis=1)
            emb = [float(sim[i, b]) for i, b in enumerate(best)]
            best = [int(b) for b in best]
        else:
            emb = [None if self.method == "lexical" else 0.0] * len(scored)
            best = [None] * len(scored)
        scores = lex if self.method == "lexical" else emb
        out = [SentenceScore(s, (a, b), e, lx, sc, sc >= self.threshold, bc)
               for (s, a, b), e, lx, sc, bc in zip(scored, emb, lex, scores, best)]
        all_scores = list(scores) + [0.0] * (len(sents) - len(scored))
        if not all_scores:
            return GroundednessResult(True, 1.0, 1.0, self.threshold, self.method, [], False)
        k = math.ceil(self.min_fraction * len(all_scores))
        answer_score = sorted(all_scores, reverse=True)[k - 1]
        fraction = sum(x >= self.threshold for x in all_scores) / len(all_scores)
        return GroundednessResult(answer_score >= self.threshold, fraction, answer_score, self.threshold,
                                  self.method, out, truncated)
