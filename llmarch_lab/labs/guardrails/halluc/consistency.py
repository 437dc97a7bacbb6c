"""Self-consistency (SelfCheckGPT-style; Manakul et al. 2023): sample k answers from the same
model for the same input at temperature > 0, and score a candidate by how much it agrees with
them. An answer the model would give again and again is more likely supported than one it
does not reproduce.

    texts = consistency.sample_answers(ep, "qa", row, k=5, seed=0)
    consistency.agreement(candidate, texts, encode)   # {"cos": ..., "em": ...}

Two agreement scores from the same samples: `cos` = mean MiniLM cosine between the candidate and
each sample (SelfCheckGPT's BERTScore variant, with MiniLM sentence embeddings); `em` = mean
share of the candidate's content words found in each sample (a soft exact match, the one that
fits short answers: "Delhi" in "The head office is in Delhi."). The hallucination score is
1 - agreement. The samples see the same input the answer was written from (HaluEval's knowledge,
dialogue or document; TruthfulQA's bare question).
"""

from __future__ import annotations

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.halluc.judge import CONTEXT_WORDS, clip_words

PROMPT_VERSION = "sample-v1"
K = 5
TEMPERATURE = 1.0
MAX_TOKENS = {"qa": 24, "dialogue": 32, "summarization": 64, "truthfulqa": 24}
ASK = {
    "qa": "Answer the question in one short sentence, using the knowledge.",
    "dialogue": "Write the assistant's next reply in one sentence, using the knowledge.",
    "summarization": "Summarize the document in two sentences.",
    "truthfulqa": "Answer the question in one short sentence.",
}


def sample_messages(task: str, context: str, query: str, context_words: int = CONTEXT_WORDS) -> list[dict]:
    if task not in ASK:
        raise LabError(f"consistency: task {task!r}: valid are {', '.join(ASK)}")
    parts = []
    if context:
        parts.append(f"{'Document' if task == 'summarization' else 'Knowledge'}: {clip_words(context, context_words)}")
    if query:
        parts.append(f"{'Dialogue' if task == 'dialogue' else 'Question'}: {query}")
    return [{"role": "user", "content": "\n".join(parts) + "\n\n" + ASK[task]}]


def sample_answers(ep, task: str, row: dict, k: int = K, temperature: float = TEMPERATURE, seed: int = 0,
                   context_words: int = CONTEXT_WORDS) -> tuple[list[str], dict]:
    """k sampled answers for one item and how they were obtained ({"n_requests", "seconds",
    "output_tokens"}). One request with n=k (llama-server decodes the k completions together
    after one prompt pass); a server that returns fewer choices is asked again, one sample a
    request with its own seed."""
    import time

    if k < 1:
        raise LabError(f"consistency: k must be >= 1, got {k}")
    if not temperature > 0:
        raise LabError(f"consistency: sampling needs temperature > 0, got {temperature}")
    msgs = sample_messages(task, row["context"], row["query"], context_words)
    client = ep.openai_client(async_=False)
    t0 = time.perf_counter()
    try:
        r = client.chat.completions.create(model=ep.model, messages=msgs, n=k, temperature=temperature,
                                           max_tokens=MAX_TOKENS[task], seed=seed)
    except Exception as e:  # the openai client's errors: one line, naming the endpoint
        raise LabError(f"endpoint {ep.base_url}: sampling failed: {type(e).__name__}: {str(e)[:200]}") from None
    texts = [(c.message.content or "").strip() for c in r.choices]
    n_req, out_tok = 1, (r.usage.completion_tokens if r.usage else 0) or 0
    while len(texts) < k:
        reply = ep.chat(msgs, MAX_TOKENS[task], temperature=temperature, seed=seed + len(texts) + 1)
        texts.append(reply.text.strip())
        n_req, out_tok = n_req + 1, out_tok + (reply.output_tokens or 0)
    return texts[:k], {"n_requests": n_req, "seconds": round(time.perf_counter() - t0, 4), "output_tokens": out_tok}


def agreement(candidate: str, samples: list[str], encode=None) -> dict[str, float]:
    """{"cos": mean cosine of the candidate to each sample, "em": mean content-word containment}.
    `encode(texts)` returns unit vectors (rules.Groundedness.encode); without it "cos" is NaN.
    An empty sample agrees with nothing (0)."""
    import numpy as np

    from llmarch_lab.labs.guardrails.rules import content_tokens, lexical_support

    if not samples:
        raise LabError("consistency: no samples to agree with")
    texts = [s if s.strip() else "" for s in samples]
    live = [s for s in texts if s]
    cos = np.full(len(texts), np.nan) if encode is None else np.zeros(len(texts))
    if live and encode is not None:
        v = encode([candidate, *live])
        sims = iter((v[1:] @ v[0]).tolist())
        cos = np.array([next(sims) if s else 0.0 for s in texts])
    em = [lexical_support(candidate, content_tokens(s)) if s else 0.0 for s in texts]
    return {"cos": float(np.mean(cos)), "em": float(np.mean(em))}
