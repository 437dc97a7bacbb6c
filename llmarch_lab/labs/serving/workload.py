"""Request workloads: real PubMedQA questions with their abstracts, or synthetic prompts of an
exact token length cut from real WikiText-2 text (random offsets, so no two prompts share a
prefix an engine's prefix cache could reuse), or `pubmedqa-shared`: each abstract asked
SHARED_QUESTIONS in a row, the abstract first (a shared prefix, as in RAG over one document),
for measuring prefix / prompt caching.

    reqs = workload.build("synthetic", tokenizer, n=64, input_tokens=128, output_tokens=64, seed=0)
"""

from __future__ import annotations

import itertools
import random
from typing import Iterator

from llmarch_lab import LabError
from llmarch_lab.assets import datasets
from llmarch_lab.llm.load import Request

WORKLOADS = ("synthetic", "pubmedqa", "pubmedqa-shared")
# Asked of every abstract after its own PubMedQA question (pubmedqa-shared): 4 requests per abstract.
SHARED_QUESTIONS = ("What was the study design?", "Which population was studied?", "What was the main finding?")


def _count(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"]) if tok is not None else len(text.split())


def _cut(tok, text: str, n_tokens: int) -> str:
    if tok is None:
        return " ".join(text.split()[:n_tokens])
    ids = tok(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return tok.decode(ids)


def build(workload: str, tok, n: int, input_tokens: int, output_tokens: int, seed: int = 0) -> list[Request]:
    """`n` chat requests; `input_tokens` is the prompt budget (exact for synthetic, a cap on the
    abstract for pubmedqa), `output_tokens` the max_tokens of each request."""
    if workload not in WORKLOADS:
        raise LabError(f"workload {workload!r}: use one of {', '.join(WORKLOADS)}")
    if n < 1 or input_tokens < 1 or output_tokens < 1:
        raise LabError("workload: n, input_tokens and output_tokens must all be >= 1")
    rng = random.Random(seed)
    out: list[Request] = []
    if workload == "synthetic":
        text = datasets.wikitext2_test()
        words = text.split()
        span = input_tokens * 2 + 16  # words comfortably above the token budget
        if len(words) < span + 1:
            raise LabError("workload synthetic: WikiText-2 text is shorter than the prompt budget")
        for i in range(n):
            start = rng.randrange(0, len(words) - span)
            prompt = _cut(tok, " ".join(words[start:start + span]), input_tokens)
            out.append(Request(i, [{"role": "user", "content": prompt}], output_tokens, _count(tok, prompt)))
        return out
    pq = datasets.pubmedqa()
    order = list(range(len(pq)))
    rng.shuffle(order)
    if workload == "pubmedqa-shared":
        for j in order:
            row = pq.iloc[j]
            context = f"Context: {_cut(tok, ' '.join(row.contexts), input_tokens)}\n\n"
            for q in (row.question, *SHARED_QUESTIONS):
                if len(out) == n:
                    return out
                prompt = f"{context}Question: {q}\nAnswer briefly."
                out.append(Request(len(out), [{"role": "user", "content": prompt}], output_tokens, _count(tok, prompt)))
        return out
    for i, j in enumerate(itertools.islice(itertools.cycle(order), n)):
        row = pq.iloc[j]
        context = _cut(tok, " ".join(row.contexts), input_tokens)
        prompt = f"Context: {context}\n\nQuestion: {row.question}\nAnswer briefly."
        out.append(Request(i, [{"role": "user", "content": prompt}], output_tokens, _count(tok, prompt)))
    return out


def cycle(reqs: list[Request], start_id: int = 0) -> Iterator[Request]:
    """Endless stream of requests with fresh ids, cycling through the workload."""
    for k, r in enumerate(itertools.cycle(reqs)):
        yield Request(start_id + k, r.messages, r.max_tokens, r.prompt_tokens)
