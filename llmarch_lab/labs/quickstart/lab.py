"""Quickstart lab: the embedded LLM answers real questions, the embedded embedder retrieves a
PubMedQA abstract by its question, and the run is logged on the results schema.

    llmarch-lab run experiments/quickstart.yaml --only quickstart
    # or interactively: notebooks/00_quickstart.ipynb
"""

from __future__ import annotations

import random
import time

from pydantic import Field

from llmarch_lab.assets import datasets, models
from llmarch_lab.common import stats
from llmarch_lab.config import EmbedderFields, LLMFields
from llmarch_lab.llm import local
from llmarch_lab.results import Result


class QuickstartParams(LLMFields, EmbedderFields):
    lab = "quickstart"
    key_metrics = ("throughput.decode_tok_per_s", "quality.retrieval_hit_at_1", "latency.query_ms_p50")

    # models: model, embedder, device, dtype (config.LLMFields, config.EmbedderFields)
    # generation
    questions: list[str] = Field(
        ["What is the capital of France?", "Name one benefit of regular exercise."],
        min_length=1, description="Questions the LLM answers (chat template, greedy decoding).")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Tokens generated per answer at most.")
    # retrieval
    n_docs: int = Field(64, ge=2, le=1000, description="PubMedQA abstracts embedded as the corpus.")
    n_queries: int = Field(8, ge=1, le=1000, description="Questions (of those abstracts) used as queries.")
    top_k: int = Field(3, ge=1, le=100, description="Retrieved abstracts per query.")


def answer(model, tok, question: str, max_new_tokens: int) -> tuple[str, int, float]:
    """(answer text, generated tokens, seconds) for one greedy chat completion."""
    g = local.chat(model, tok, question, max_new_tokens)
    return g.text, g.output_tokens, g.seconds


def run(p: QuickstartParams) -> Result:
    import numpy as np
    import pandas as pd

    res = Result(tags={"model": p.model, "embedder": p.embedder})
    (model, tok), load_s = models.timed(models.load_causal_lm, p.model, device=p.device, dtype=p.dtype)
    res.add("latency.llm_load_s", load_s)
    local.warm_up(model, tok)
    rows = []
    for q in p.questions:
        text, n_tok, secs = answer(model, tok, q, p.max_new_tokens)
        rows.append({"question": q, "answer": text, "output_tokens": n_tok, "seconds": round(secs, 3)})
    answers = pd.DataFrame(rows)
    res.tables["answers"] = answers
    res.add("throughput.decode_tok_per_s", answers.output_tokens.sum() / answers.seconds.sum())
    res.metrics.update(stats.percentiles(answers.seconds * 1000, "latency.generate_ms"))

    # Retrieval: embed a random sample of PubMedQA abstracts, query with their own questions.
    pq = datasets.pubmedqa()
    rng = random.Random(p.seed)
    docs = pq.iloc[sorted(rng.sample(range(len(pq)), min(p.n_docs, len(pq))))].reset_index(drop=True)
    emb, emb_load_s = models.timed(models.load_embedder, p.embedder, device=p.device)
    res.add("latency.embedder_load_s", emb_load_s)
    passages = [" ".join(c) for c in docs.contexts]
    t0 = time.perf_counter()
    doc_vecs = emb.encode(passages, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    res.add("throughput.docs_per_s", len(passages) / (time.perf_counter() - t0))
    qidx = rng.sample(range(len(docs)), min(p.n_queries, len(docs)))
    hits, lat, sims_rows = [], [], []
    for i in qidx:
        t0 = time.perf_counter()
        qv = emb.encode([docs.question[i]], normalize_embeddings=True, convert_to_numpy=True)[0]
        sims = doc_vecs @ qv
        top = np.argsort(-sims)[: p.top_k]
        lat.append((time.perf_counter() - t0) * 1000)
        hits.append({"question": docs.question[i], "gold_id": docs.id[i], "top1_id": docs.id[top[0]],
                     "hit_at_1": int(top[0] == i), f"hit_at_{p.top_k}": int(i in top),
                     "top1_score": round(float(sims[top[0]]), 4)})
        sims_rows.append(sims)
    ret = pd.DataFrame(hits)
    res.tables["retrieval"] = ret
    res.add("quality.retrieval_hit_at_1", ret.hit_at_1.mean())
    res.add(f"quality.retrieval_hit_at_{p.top_k}", ret[f"hit_at_{p.top_k}"].mean())
    res.metrics.update(stats.percentiles(lat, "latency.query_ms"))
    res.figures["query_doc_similarity"] = similarity_plot(np.array(sims_rows), qidx)
    return res


def similarity_plot(sims, gold_cols):
    """Heatmap of query x document cosine similarity, gold documents circled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.4 * len(sims) + 1.5))
    im = ax.imshow(sims, aspect="auto", cmap="viridis")
    ax.scatter(gold_cols, range(len(gold_cols)), s=60, facecolors="none", edgecolors="red", label="own abstract")
    ax.set_xlabel("PubMedQA abstract (corpus index)")
    ax.set_ylabel("query (question)")
    ax.set_title("Cosine similarity, MiniLM: each question should light up its own abstract")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
