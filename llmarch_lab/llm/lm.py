"""One LM protocol for the local (transformers) and endpoint (OpenAI-compatible) backends, and one
caching wrapper over either.

    lm = LocalLM(model, tok)                       # or EndpointLM(Endpoint(url, name), tok)
    lm.chat("What is ...?", max_tokens=64)         # Completion(text, output_tokens, prompt_tokens, seconds)
    lm.label_logprobs(prompts, ("yes", "no"))      # LabelScores: (n, k) log-probs of each label's first token
    lm.rolling_nll(text, max_length=512)           # Perplexity (local; an endpoint raises LabError)
    lm.embed(texts)                                # (n, d) float32 (local: llm/embeddings; endpoint: /v1/embeddings)
    CachedLM(lm)                                   # the same calls, answered from disk when asked before

Labs score through the protocol, so a study written against a local model runs unchanged
against a served one (labs/finetune scores both ways with one function). Where a backend cannot
do something it says so in one line (an OpenAI-compatible server returns no prompt log-probs, so
no rolling NLL). `LabelScores.bounded` names, per prompt, the labels whose value is only an upper
bound (an endpoint reports the top-N next tokens; a label outside them gets the N-th value);
local scores are exact (`bounded` is None).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from llmarch_lab import LabError


@dataclass
class Completion:
    text: str
    output_tokens: int | None
    prompt_tokens: int | None
    seconds: float


@dataclass
class LabelScores:
    values: object  # numpy (n, k) floats: log-prob of each label's first token after each prompt
    bounded: list[tuple[str, ...]] | None = None  # per prompt, the labels whose value is an upper bound


@runtime_checkable
class LM(Protocol):
    key: str | None  # what a cache may key on (None: this backend's answers must not be cached)

    def chat(self, messages: list[dict] | str, max_tokens: int) -> Completion: ...

    def label_logprobs(self, prompts: list[str], labels, desc: str = "scoring") -> LabelScores: ...

    def rolling_nll(self, text: str, max_length: int = 512, stride: int = 256): ...

    def embed(self, texts: list[str]): ...


class LocalLM:
    """A transformers causal LM and its tokenizer (llm/local.py). `key` names the weights for a
    cache (e.g. "smollm2-135m-instruct@fp32"); leave it None for weights in flux (a training run)."""

    def __init__(self, model, tok, key: str | None = None, batch_size: int = 8, embedder: str | None = None):
        self.model, self.tok, self.key, self.batch_size, self.embedder = model, tok, key, batch_size, embedder

    def chat(self, messages, max_tokens: int) -> Completion:
        from llmarch_lab.llm import local

        g = local.chat(self.model, self.tok, messages, max_new_tokens=max_tokens)
        return Completion(g.text, g.output_tokens, g.prompt_tokens, g.seconds)

    def label_logprobs(self, prompts: list[str], labels, desc: str = "scoring") -> LabelScores:
        from llmarch_lab.llm import local

        lp = local.label_logprobs(self.model, self.tok, list(prompts), labels, self.batch_size, desc)
        return LabelScores(lp.numpy())

    def rolling_nll(self, text: str, max_length: int = 512, stride: int = 256):
        from llmarch_lab.llm import perplexity

        return perplexity.strided_perplexity(self.model, perplexity.tokenize(self.tok, text), max_length, stride,
                                             progress=False)

    def embed(self, texts: list[str]):
        from llmarch_lab.assets import models
        from llmarch_lab.llm import embeddings

        return embeddings.embed(texts, self.embedder or models.MINILM)


class EndpointLM:
    """An OpenAI-compatible server (llm/endpoint.Endpoint). `tok` is the served model's tokenizer:
    it renders the labels' first tokens as the server reports them."""

    def __init__(self, endpoint, tok=None, top_logprobs: int = 20):
        self.endpoint, self.tok, self.top_logprobs = endpoint, tok, top_logprobs
        self.key = f"endpoint:{endpoint.base_url}:{endpoint.model}:top{top_logprobs}"

    def chat(self, messages, max_tokens: int) -> Completion:
        r = self.endpoint.chat(messages, max_tokens)
        return Completion(r.text, r.output_tokens, r.prompt_tokens, r.seconds)

    def first_tokens(self, labels) -> list[str]:
        if self.tok is None:
            return list(labels)
        from llmarch_lab.llm import local

        return [self.tok.decode([i]) for i in local.label_token_ids(self.tok, labels)]

    def label_logprobs(self, prompts: list[str], labels, desc: str = "scoring") -> LabelScores:
        import numpy as np
        from tqdm.auto import tqdm

        labels, firsts = list(labels), self.first_tokens(labels)
        values, bounded = [], []
        for prompt in tqdm(prompts, desc=desc, leave=False):
            top = self.endpoint.completion_logprobs(prompt, max_tokens=1, top_logprobs=self.top_logprobs).top_logprobs[0]
            floor = min(top.values())
            values.append([top.get(t, floor) for t in firsts])
            bounded.append(tuple(w for w, t in zip(labels, firsts) if t not in top))
        return LabelScores(np.asarray(values, dtype=np.float64).reshape(len(prompts), len(labels)), bounded)

    def rolling_nll(self, text: str, max_length: int = 512, stride: int = 256):
        raise LabError(f"rolling NLL: {self.endpoint.base_url} is an OpenAI-compatible server, which returns no "
                       "prompt log-probs; score perplexity with a local backend (LocalLM)")

    def embed(self, texts: list[str]):
        import numpy as np

        return np.asarray(self.endpoint.embeddings(list(texts)), dtype=np.float32)


class CachedLM:
    """Any LM with its answers kept on disk (diskcache under paths.cache_dir()/lm), keyed by the
    backend's `key`, the call and its arguments: a repeated evaluation costs lookups, not calls.
    `hits` and `misses` count calls. Timings in a cached Completion are those of the first call."""

    def __init__(self, lm: LM, cache_dir: Path | None = None):
        if not getattr(lm, "key", None):
            raise LabError(f"CachedLM: {type(lm).__name__} has no cache key (give LocalLM(key=...) naming the "
                           "weights, or do not cache a model whose weights change)")
        from llmarch_lab import paths

        self.lm, self.key = lm, lm.key
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "lm"
        self.hits = self.misses = 0

    def _cached(self, call: str, args: list, compute):
        from diskcache import Cache

        k = hashlib.sha256(json.dumps([self.key, call, args], sort_keys=True, default=str).encode()).hexdigest()
        with Cache(str(self.cache_dir)) as cache:
            hit = cache.get(k)
            if hit is not None:
                self.hits += 1
                return hit
            self.misses += 1
            value = compute()
            cache.set(k, value)
            return value

    def chat(self, messages, max_tokens: int) -> Completion:
        return self._cached("chat", [messages, max_tokens], lambda: self.lm.chat(messages, max_tokens))

    def label_logprobs(self, prompts: list[str], labels, desc: str = "scoring") -> LabelScores:
        return self._cached("label_logprobs", [list(prompts), list(labels)],
                            lambda: self.lm.label_logprobs(prompts, labels, desc))

    def rolling_nll(self, text: str, max_length: int = 512, stride: int = 256):
        return self._cached("rolling_nll", [text, max_length, stride],
                            lambda: self.lm.rolling_nll(text, max_length, stride))

    def embed(self, texts: list[str]):
        return self._cached("embed", [list(texts)], lambda: self.lm.embed(texts))
