"""The 500k scenario's run (issue 32, part 5) end to end on a few hundred real passages: a real
store, the real query encoder, a cross-encoder trained on train queries, BM25 beside it."""

from __future__ import annotations

import pytest

from llmarch_lab import LabError, paths
from llmarch_lab.labs.rag.corpus import files, scenario
from llmarch_lab.labs.rag.corpus.scenario import ScenarioParams


@pytest.fixture(scope="module")
def small():
    c = files.load("slice")
    return files.subset(c, c.queries, 600)  # every judged passage of the slice is kept: all its queries stay answerable


def test_scenario_runs_end_to_end_on_a_subset(small):
    p = ScenarioParams(which="slice", store="lancedb", setting="nprobes=20,refine_factor=10", per_task=3,
                       rerank_k=3, train_queries=6, threads="1")
    res = scenario.run(p, corpus=small)
    pipe, rel = res.tables["pipeline"], res.tables["relevance"]
    assert list(pipe.pipeline) == ["dense (store)", "dense (store) + rerank top 3"] and set(pipe.queries) == {9}
    assert (pipe.total_ms_p50 >= pipe.search_ms_p50).all() and (pipe.rerank_ms_p50.iloc[1] > 0)
    assert set(rel.retriever) == {"bm25s", "dense (store)", "dense (store) + rerank top 3", "hybrid (store)"}
    assert set(rel.task) == {"quora", "boolq", "halueval-qa"} and rel.success_at_10.between(0, 1).all()
    assert res.metrics["quality.success_at_10"] >= 0.5  # 9 questions over ~600 passages: most find theirs
    assert res.metrics["latency.total_rerank_ms_p99"] >= res.metrics["latency.total_ms_p50"]
    assert set(res.figures) == {"latency", "relevance"}
    assert not (paths.cache_dir() / "rag_scenario" / "lancedb").exists()  # the store's folder is gone


def test_subset_gets_its_own_vectors_folder(small):
    from llmarch_lab.labs.rag.corpus import vectors

    c = files.load("slice")
    assert vectors.path(small, "minilm-l6") != vectors.path(c, "minilm-l6")
    assert len(small.passages) == 600 and small.manifest["subset_of"] == len(c.passages)


@pytest.mark.parametrize("store,setting,match", [
    ("qdrant", "nprobes=5", r"setting nprobes: not a qdrant search setting \(valid: exact, hnsw_ef\)"),
    ("lancedb", "hnsw_ef", r"setting 'hnsw_ef': give key=value pairs"),
])
def test_bad_settings_are_one_clear_line(store, setting, match):
    with pytest.raises(LabError, match=match):
        scenario.run(ScenarioParams(which="slice", store=store, setting=setting))


def test_params_reject_bad_threads():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="threads"):
        ScenarioParams(threads="1,two")
