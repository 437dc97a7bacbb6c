"""Second-stage rerankers over a first-stage run on the corpus (issue 32, part 4).

    from llmarch_lab.labs.rag.corpus import rerank
    pairs = rerank.training_pairs(corpus, bm25_index, n_queries=1500)     # train split only
    path = rerank.train_cross_encoder(pairs, corpus)                     # MiniLM -> cross-encoder, cached
    run, ms = rerank.cross_encoder_rerank(path, corpus, queries, first_run, k=20)
    run, ms = rerank.llm_rerank(endpoint, corpus, queries, first_run, k=20)

Cross-encoder: all-MiniLM-L6-v2's weights with a one-logit head, trained with sentence-
transformers' CrossEncoderTrainer and binary cross-entropy on the corpus's train split: each
query's relevant passages (label 1) and `negatives` hard negatives drawn from its BM25 top 30
that are not judged relevant (label 0; unjudged duplicates among them are label noise, as in
MS MARCO training). No dev or test query is seen in training.

LLM pointwise: each (query, passage) is one chat request to an OpenAI-compatible server
(llama-server on Qwen2.5-0.5B here); the score is log p("yes") - log p("no") of the first token
(the prompt asks whether the passage answers or matches the query); candidates the model gives
no yes/no log-prob for keep their first-stage order below the scored ones.

The reranked run keeps the first stage's order below the top k. Latency is the reranking of
one query's k candidates, wall-clock, one query at a time.
"""

from __future__ import annotations

import hashlib
import random
import time

from llmarch_lab import LabError, paths
from llmarch_lab.labs.rag.corpus import evaluate, vectors

PROMPT = ("Passage: {passage}\n\nQuery: {query}\n\nDoes the passage answer the query, or ask the same "
          "question? Answer with one word, yes or no.")


def training_pairs(corpus, index, n_queries: int = 1500, negatives: int = 3, seed: int = 0):
    """DataFrame(query, passage, label) from train-split queries (seeded draw across the tasks)."""
    import pandas as pd

    q = evaluate.sample(corpus, "train", per_task=max(1, n_queries // 3), seed=seed)
    run = evaluate.bm25_run(corpus, q, k=30, index=index)
    text = dict(zip(corpus.passages.pid, vectors.texts(corpus)))
    rng = random.Random(seed)
    rows = []
    for qid, query, rel in zip(q.qid, q.text, q.relevant):
        for p in rel[:3]:
            rows.append((query, text[p], 1.0))
        hard = [p for p in run.get(qid, {}) if p not in set(rel)]
        for p in rng.sample(hard, min(negatives, len(hard))):
            rows.append((query, text[p], 0.0))
    return pd.DataFrame(rows, columns=["query", "passage", "label"]).sample(frac=1.0, random_state=seed)


def model_dir(pairs, epochs: int, lr: float, max_length: int = 256, bf16: bool = False):
    extra = f"|{max_length}" + ("|bf16" if bf16 else "") if (max_length != 256 or bf16) else ""  # old keys stay valid
    h = hashlib.sha256(pd_digest(pairs).encode() + f"{epochs}|{lr}{extra}".encode()).hexdigest()[:12]
    return paths.cache_dir() / "models" / f"rag-cross-encoder-{h}"


def pd_digest(pairs) -> str:
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(pairs, index=False).values.tobytes()).hexdigest()


def train_cross_encoder(pairs, epochs: int = 1, lr: float = 2e-5, batch_size: int = 32, max_length: int = 256,
                        bf16: bool | None = None):
    """Train (or reuse, keyed by the pairs and settings) the MiniLM cross-encoder; its folder.
    `bf16` (default: where the CPU has native bf16) trains under bf16 autocast (faster there)."""
    from llmarch_lab.llm.embeddings import native_bf16

    bf16 = native_bf16() if bf16 is None else bf16
    out = model_dir(pairs, epochs, lr, max_length, bf16)
    if (out / "config.json").is_file():
        return out
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from llmarch_lab.assets import models

    model = CrossEncoder(str(models.minilm_dir()), num_labels=1, max_length=max_length, device="cpu")
    args = CrossEncoderTrainingArguments(output_dir=str(out) + ".work", num_train_epochs=epochs, learning_rate=lr,
                                         per_device_train_batch_size=batch_size, warmup_steps=0.1,
                                         save_strategy="no", logging_steps=50, report_to="none", seed=0,
                                         use_cpu=True, dataloader_num_workers=0, bf16=bf16)
    ds = Dataset.from_pandas(pairs[["query", "passage", "label"]].reset_index(drop=True))
    CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=BinaryCrossEntropyLoss(model)).train()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(str(tmp))
    tmp.rename(out)
    return out


def rerank_with(first_run: dict, qids, scorer, k: int):
    """Rerank each query's top k by scorer(qid, pids) -> scores (None = unscored, kept last in the
    head); the tail keeps the first stage's order. Returns (run, milliseconds per query)."""
    out, ms = {}, []
    for qid in qids:
        ranked = sorted(first_run.get(qid, {}), key=lambda p: -first_run[qid][p])
        head, tail = ranked[:k], ranked[k:]
        t0 = time.perf_counter()
        scores = scorer(qid, head) if head else []
        ms.append((time.perf_counter() - t0) * 1000)
        order = sorted(range(len(head)), key=lambda i: (-scores[i] if scores[i] is not None else float("inf"), i))
        n = len(ranked)
        out[qid] = {**{head[i]: float(n + len(head) - r) for r, i in enumerate(order)},
                    **{p: float(n - r) for r, p in enumerate(tail, start=len(head))}}
    return out, ms


def cross_encoder_rerank(model_path, corpus, queries, first_run: dict, k: int = 20, batch_size: int = 32):
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(str(model_path), device="cpu")
    text = dict(zip(corpus.passages.pid, vectors.texts(corpus)))
    qtext = dict(zip(queries.qid, queries.text))
    return rerank_with(first_run, list(queries.qid),
                   lambda qid, pids: [float(s) for s in model.predict([(qtext[qid], text[p]) for p in pids],
                                                                      batch_size=batch_size, show_progress_bar=False)], k)


def yes_no_score(top: dict) -> float | None:
    """log p(yes) - log p(no) from one position's top log-probs, each side summed over its
    spellings (yes / Yes / " yes" ...); None when neither appears."""
    import math

    def side(words):
        lps = [v for t, v in top.items() if t.strip().lower() in words]
        return math.log(sum(math.exp(v) for v in lps)) if lps else None

    y, n = side({"yes"}), side({"no"})
    if y is None and n is None:
        return None
    return (y if y is not None else -50.0) - (n if n is not None else -50.0)


def llm_rerank(endpoint, corpus, queries, first_run: dict, k: int = 20, max_chars: int = 1200):
    """Each candidate is one chat request (the server applies the model's template) for one token
    with its top 20 log-probs."""
    if k < 1:
        raise LabError(f"k={k}: rerank at least 1 candidate")
    text = dict(zip(corpus.passages.pid, vectors.texts(corpus)))
    qtext = dict(zip(queries.qid, queries.text))

    def score(qid, pids):
        out = []
        for p in pids:
            msg = [{"role": "user", "content": PROMPT.format(passage=text[p][:max_chars], query=qtext[qid])}]
            _, lp = endpoint.chat_logprobs(msg, max_tokens=1, top_logprobs=20)
            out.append(yes_no_score(lp.top_logprobs[0]) if lp.top_logprobs else None)
        return out

    return rerank_with(first_run, list(queries.qid), score, k)
