"""Score generated answers with ragas 0.4: non-LLM metrics always, LLM-judged ones on request.

    from llmarch_lab.labs.rag import ragas_eval
    table = ragas_eval.nonllm_scores(rows)        # rows: question, answer, reference,
                                                  #       retrieved_contexts, reference_contexts
    table, failures = ragas_eval.judge_scores(rows, base_url="http://127.0.0.1:8000/v1",
                                              model="Qwen/Qwen2.5-7B-Instruct")

Non-LLM (no model needed; current `ragas.metrics.collections` API where it exists):
    context_recall     share of reference passages matched by a retrieved one (Levenshtein > 0.5;
                       legacy ragas.metrics NonLLMContextRecall, not yet in collections in 0.4.3)
    context_precision  precision of the retrieved passages against the reference passages, rank
                       weighted (legacy NonLLMContextPrecisionWithReference, same reason)
    rouge_l, bleu, string_similarity   answer vs reference answer (collections RougeScore,
                       BleuScore, NonLLMStringSimilarity)
LLM-judged (when a judge is configured: any OpenAI-compatible base URL + model, e.g. vLLM; the
client is llm.endpoint.Endpoint(...).openai_client(), the key read from `api_key_env`):
    faithfulness, answer_relevancy (judge + the local embedder), context_precision_llm
Judge replies are cached on disk (ragas DiskCacheBackend under paths.cache_dir()/ragas-judge),
each judgement is time-limited, and a failed one (timeout, HTTP error, unparsable reply,
non-finite score) is counted and excluded: it never enters an average as a number.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import warnings

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models
from llmarch_lab.llm.endpoint import Endpoint

NONLLM_METRICS = ("context_recall", "context_precision", "rouge_l", "bleu", "string_similarity")
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision_llm")


def run_async(coro):
    """Run a coroutine to completion even inside Jupyter (whose kernel already runs a loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _legacy_context_metrics():
    # In ragas 0.4.3 the reference-context (non-LLM) metrics exist only in the legacy namespace,
    # which warns on every import; the warning is known and says nothing new here.
    import ragas.metrics as legacy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return legacy.NonLLMContextRecall(), legacy.NonLLMContextPrecisionWithReference()


def nonllm_scores(rows: list[dict]):
    """One row per answer with the five non-LLM scores (floats in [0, 1])."""
    import pandas as pd
    from ragas.dataset_schema import SingleTurnSample
    from ragas.metrics.collections import BleuScore, NonLLMStringSimilarity, RougeScore

    if not rows:
        raise LabError("no generated answers to score")
    recall, precision = _legacy_context_metrics()
    rouge, bleu, sim = RougeScore(rouge_type="rougeL"), BleuScore(), NonLLMStringSimilarity()

    async def score_all():
        out = []
        for r in rows:
            sample = SingleTurnSample(user_input=r["question"], response=r["answer"], reference=r["reference"],
                                      retrieved_contexts=list(r["retrieved_contexts"]),
                                      reference_contexts=list(r["reference_contexts"]))
            ref, ans = r["reference"], r["answer"] or " "  # an empty answer scores 0, not an error
            out.append({
                "context_recall": await recall.single_turn_ascore(sample),
                "context_precision": await precision.single_turn_ascore(sample),
                "rouge_l": (await rouge.ascore(reference=ref, response=ans)).value,
                "bleu": (await bleu.ascore(reference=ref, response=ans)).value,
                "string_similarity": (await sim.ascore(reference=ref, response=ans)).value,
            })
        return out

    return pd.DataFrame(run_async(score_all()))


def _judge_components(judge: Endpoint, embedder: str):
    from ragas.cache import DiskCacheBackend
    from ragas.embeddings import HuggingFaceEmbeddings
    from ragas.llms import llm_factory

    client = judge.openai_client(async_=True)  # base URL, key from judge.api_key_env, timeout, no retries
    cache = DiskCacheBackend(cache_dir=str(paths.cache_dir() / "ragas-judge"))
    llm = llm_factory(judge.model, client=client, cache=cache, temperature=0.0, max_tokens=1024)
    emb = HuggingFaceEmbeddings(model=models.resolve(embedder), device="cpu")
    return llm, emb


def judge_scores(rows: list[dict], base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, embedder: str = models.MINILM):
    """(DataFrame of judged scores, NaN where a judgement failed; number of failed judgements)."""
    import pandas as pd
    from ragas.metrics.collections import AnswerRelevancy, ContextPrecision, Faithfulness

    if not base_url or not model:
        raise LabError("judge needs both judge_base_url and judge_model")
    judge = Endpoint(base_url, model, api_key_env=api_key_env, timeout_s=timeout_s)
    llm, emb = _judge_components(judge, embedder)
    metrics = {"faithfulness": Faithfulness(llm=llm),
               "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=emb),
               "context_precision_llm": ContextPrecision(llm=llm)}

    def kwargs_for(name, r):
        ctx = list(r["retrieved_contexts"])
        if name == "faithfulness":
            return dict(user_input=r["question"], response=r["answer"], retrieved_contexts=ctx)
        if name == "answer_relevancy":
            return dict(user_input=r["question"], response=r["answer"])
        return dict(user_input=r["question"], reference=r["reference"], retrieved_contexts=ctx)

    async def judge_all():
        out, failures = [], 0
        for r in rows:
            row = {}
            for name, metric in metrics.items():
                try:
                    # A metric makes several judge calls; bound the whole judgement, not one call.
                    res = await asyncio.wait_for(metric.ascore(**kwargs_for(name, r)), timeout=3 * timeout_s)
                    value = float(res.value)
                    if math.isnan(value) or math.isinf(value):
                        raise ValueError(f"non-finite score {value}")
                    row[name] = value
                except Exception as e:  # noqa: BLE001 - any failure is counted, never averaged
                    failures += 1
                    row[name] = float("nan")
                    row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:200]}"
            out.append(row)
        return out, failures

    table, failures = run_async(judge_all())
    return pd.DataFrame(table), failures
