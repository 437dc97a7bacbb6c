"""The plan's traffic: a trace of requests over the measured questions, replayed through the cache.

    tr = workload.question_trace(pairs, router_scores, n_requests=3000, repeat_rate=0.3,
                                 paraphrase_share=0.5, zipf_s=1.1, seed=0)
    tr = workload.with_cache(tr, cache.SemanticCache(cache.CHOSEN), paraphrase_hit_rate=0.4, seed=0)

Each request asks one measured question (PubMedQA or GSM8K, with both models' outcomes and token
counts). A request is new (the next unseen question, in a seeded order) or, with probability
`repeat_rate` once something was asked, a repeat of an earlier question chosen with Zipf weights
over first-seen order (early questions are the popular ones). A repeat is verbatim or, with
probability `paraphrase_share`, the same question in other words.

Cache outcomes (column cache_outcome: miss / correct_hit / wrong_hit, and cache_basis saying how
it was obtained):
- verbatim repeats and new questions go through the real semantic cache (real lookups over the
  real question texts: a hit on a new question is a real wrong hit between two different questions);
- paraphrases cannot be replayed (there are no paraphrases of these questions), so a paraphrase
  hits with the cache's hit rate measured on the Quora duplicate pairs (`paraphrase_hit_rate`,
  basis "quora-rate"): a composed estimate, and the plan says so.
"""

from __future__ import annotations

import numpy as np

from llmarch_lab import LabError


def question_trace(pairs, router_scores, n_requests: int, repeat_rate: float, paraphrase_share: float,
                   zipf_s: float, seed: int = 0):
    """One row per request with the plan's columns (plan.BASE_COLUMNS, router_score, task, kind);
    at most len(pairs) / (1 - repeat_rate) requests, so the repeat rate is the one asked for."""
    import pandas as pd

    if len(router_scores) != len(pairs):
        raise LabError(f"question_trace: {len(router_scores)} router scores for {len(pairs)} questions")
    # With Q questions, a trace keeps its repeat rate only up to Q / (1 - repeat_rate) requests:
    # past that every request would have to be a repeat (and the cache would look far better).
    n_requests = min(n_requests, max(1, int(len(pairs) / (1.0 - repeat_rate))))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    seen: list[int] = []
    nxt = 0
    rows = []
    for rid in range(n_requests):
        repeat = bool(seen) and (rng.random() < repeat_rate or nxt >= len(order))
        if repeat:
            w = 1.0 / np.arange(1, len(seen) + 1) ** zipf_s
            q = seen[rng.choice(len(seen), p=w / w.sum())]
            kind = "paraphrase" if rng.random() < paraphrase_share else "verbatim"
        else:
            q = int(order[nxt])
            nxt += 1
            seen.append(q)
            kind = "new"
        r = pairs.iloc[q]
        rows.append({"request_id": rid, "intent_id": r["qid"], "task": r["task"], "kind": kind, "text": r["prompt"],
                     "router_score": float(router_scores[q]), "small_correct": float(r["weak"]),
                     "large_correct": float(r["strong"]),
                     "small_prompt_tokens": float(r["small_prompt_tokens"]),
                     "small_output_tokens": float(r["small_output_tokens"]),
                     "large_prompt_tokens": float(r["large_prompt_tokens"]),
                     "large_output_tokens": float(r["large_output_tokens"])})
    return pd.DataFrame(rows)


def with_cache(trace, cache, paraphrase_hit_rate: float, seed: int = 0):
    """The trace with cache_outcome, cache_source_id and cache_basis (see the module docstring).
    `cache` is an empty SemanticCache; a miss puts the request's text with its request id."""
    rng = np.random.default_rng(seed + 1)
    first_miss: dict[str, int] = {}
    outcome, source, basis = [], [], []
    for r in trace.itertuples(index=False):
        if r.kind == "paraphrase":
            hit = r.intent_id in first_miss and rng.random() < paraphrase_hit_rate
            outcome.append("correct_hit" if hit else "miss")
            source.append(first_miss.get(r.intent_id) if hit else None)
            basis.append("quora-rate")
        else:
            h = cache.get(r.text)
            basis.append("replayed")
            if h is None:
                outcome.append("miss")
                source.append(None)
            else:
                src_rid, src_intent = h.answer
                outcome.append("correct_hit" if src_intent == r.intent_id else "wrong_hit")
                source.append(src_rid)
        if outcome[-1] == "miss":
            if r.kind != "paraphrase":
                cache.put(r.text, (r.request_id, r.intent_id))
            first_miss.setdefault(r.intent_id, r.request_id)
    out = trace.copy()
    out["cache_outcome"] = outcome
    out["cache_source_id"] = source
    out["cache_basis"] = basis
    return out
