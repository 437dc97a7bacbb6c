"""Rerankers on the corpus (issue 32, part 4): the reordering rule, a real cross-encoder trained
for two steps, and the LLM pointwise reranker against a real llama-server (Qwen2.5-0.5B)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmarch_lab import LabError
from llmarch_lab.labs.rag.corpus import evaluate, files, rerank


def test_rerank_reorders_the_head_and_keeps_the_tail():
    first = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0}}
    run, ms = rerank.rerank_with(first, ["q"], lambda qid, pids: [0.1, None, 0.9], k=3)
    assert sorted(run["q"], key=lambda p: -run["q"][p]) == ["c", "a", "b", "d"]  # unscored last in the head
    assert len(ms) == 1 and ms[0] >= 0


@pytest.fixture(scope="module")
def slice_corpus():
    return files.load("slice")


def test_cross_encoder_trains_reuses_and_scores(slice_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    c = slice_corpus
    idx = evaluate.bm25_index(c)
    pairs = rerank.training_pairs(c, idx, n_queries=6, negatives=1)
    assert set(pairs.label) == {0.0, 1.0}
    train_q = set(evaluate.sample(c, "train", 2).text)
    assert set(pairs["query"]) <= train_q  # training sees train-split queries only
    path = rerank.train_cross_encoder(pairs, batch_size=8)
    assert (path / "config.json").is_file() and rerank.train_cross_encoder(pairs, batch_size=8) == path
    q = evaluate.sample(c, "dev", 2)
    first = evaluate.bm25_run(c, q, index=idx)
    run, ms = rerank.cross_encoder_rerank(path, c, q, first, k=5)
    assert set(run) == set(q.qid) and len(ms) == len(q)
    for qid in q.qid:
        assert set(run[qid]) == set(first[qid])


def test_llm_pointwise_rerank_on_a_real_server(slice_corpus, tmp_path):
    from llmarch_lab.llm import engines

    c = slice_corpus
    q = evaluate.sample(c, "dev", 1).head(2)
    first = evaluate.bm25_run(c, q)
    with engines.launch("llama-server", "qwen2.5-coder-0.5b-instruct", log_path=tmp_path / "qwen.log",
                        max_model_len=1024) as eng:
        ep = eng.endpoint(timeout_s=120)
        run, ms = rerank.llm_rerank(ep, c, q, first, k=3)
        msg = [{"role": "user", "content": rerank.PROMPT.format(passage="Paris is the capital of France.",
                                                                query="What is the capital of France?")}]
        yes = rerank.yes_no_score(ep.chat_logprobs(msg, max_tokens=1, top_logprobs=20)[1].top_logprobs[0])
        msg = [{"role": "user", "content": rerank.PROMPT.format(passage="Bananas are yellow fruit.",
                                                                query="What is the capital of France?")}]
        no = rerank.yes_no_score(ep.chat_logprobs(msg, max_tokens=1, top_logprobs=20)[1].top_logprobs[0])
    assert yes is not None and no is not None and math.isfinite(yes) and yes > no
    assert set(run) == set(q.qid) and len(ms) == 2
    assert rerank.yes_no_score({" Yes": -0.1, "No": -2.5, "maybe": -3.0}) == pytest.approx(2.4)
    assert rerank.yes_no_score({"maybe": -1.0}) is None
    with pytest.raises(LabError, match="k=0"):
        rerank.llm_rerank(None, c, q, first, k=0)
    assert Path(tmp_path / "qwen.log").exists()
