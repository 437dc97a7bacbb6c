"""Vector stores side by side (issue 32, part 2) on small inputs: every adapter really starts its
engine, ingests, indexes, answers filtered searches and leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmarch_lab import LabError
from llmarch_lab.labs.rag.stores import base, bench
from llmarch_lab.labs.rag.stores.base import Filter


def data(n=3000, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim))
    mat = centres[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, dim))
    mat = (mat / np.linalg.norm(mat, axis=1, keepdims=True)).astype(np.float32)
    payload = pd.DataFrame({"source": np.where(np.arange(n) % 3 == 0, "boolq", "quora"),
                            "n_chars": (np.arange(n) * 7) % 500})
    q = mat[rng.integers(0, n, 40)] + 0.05 * rng.standard_normal((40, dim)).astype(np.float32)
    return mat, payload, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(base.STORES))
def test_store_ladder_filters_and_cleanup(name, tmp_path):
    mat, payload, q = data()
    row, ladder = bench.run_store(name, mat, payload, q[:20], q[20:], tmp_path / name)
    assert not (tmp_path / name).exists()
    assert ladder and all(r["store"] == name for r in ladder)
    # the walk stops at the first setting that reaches the goal (or runs to the end)
    assert all(r["recall_at_10"] < bench.GOAL for r in ladder[:-1])
    assert row["test_recall_at_10"] >= 0.9 and row["disk_mb"] > 0 and row["ingest_per_s"] > 0
    for flt in bench.FILTERS:
        assert row[f"{flt.label()} recall_at_10"] >= 0.8, flt


@pytest.mark.parametrize("name", sorted(base.STORES))
def test_filtered_search_returns_only_matching_rows(name, tmp_path):
    mat, payload, q = data(n=800)
    store = base.make(name, tmp_path / name)
    server = store.srv.get_pid() if name == "pgvector" else None
    try:
        store.ingest(mat, payload, batch=300)
        store.build_index()
        flt = Filter(source="boolq", max_chars=250)
        keep = set(np.flatnonzero(flt.mask(payload)).tolist())
        got = store.search(q[0], 10, store.ladder[-1], flt)
        assert len(got) == 10 and set(got) <= keep
        exact = store.search(q[0], 10, store.ladder[-1])
        assert len(exact) == 10 and len(set(exact) & set(bench.truth(mat, q[:1])[0].tolist())) >= 8
    finally:
        store.close()
    if server is not None:  # the PostgreSQL server is stopped (a zombie awaiting its reaper counts as gone)
        import psutil

        try:
            assert psutil.Process(server).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass


def test_unknown_store_is_one_line():
    with pytest.raises(LabError, match="store 'nope': valid are"):
        base.make("nope", "/tmp/x")


@pytest.mark.parametrize("name", sorted(base.STORES))
def test_hybrid_and_relevance_on_the_slice(name, tmp_path):
    from llmarch_lab.labs.rag.corpus import files

    c = files.load("slice")
    n = 600
    mat, _, _ = data(n=n, dim=32)
    judged = c.queries[c.queries.split == "test"].head(4)
    rel = sorted({p for r in judged.relevant for p in r})
    passages = pd.concat([c.passages[c.passages.pid.isin(rel)], c.passages[~c.passages.pid.isin(rel)]]).head(n)
    payload = pd.DataFrame({"source": passages.source.to_numpy(), "n_chars": passages.text.str.len().to_numpy(),
                            "text": passages.text.to_numpy()})
    pids = passages.pid.to_numpy()
    qv = mat[-len(judged):]  # vectors of unrelated rows: only the lexical leg can find the answers
    store = base.make(name, tmp_path / name)
    try:
        store.ingest(mat, payload, batch=250)
        store.build_index()
        got = store.hybrid(qv[0], judged.text.iloc[0], 10, store.ladder[-1])
        assert 0 < len(got) <= 10 and all(0 <= r < n for r in got)
        row = bench.relevance(store, judged, qv, pids, store.ladder[-1], hybrid=True)
        dense = bench.relevance(store, judged, qv, pids, store.ladder[-1])
    finally:
        store.close()
    assert "hybrid p99_ms" in row and "dense p99_ms" in dense
    # with random vectors the dense leg finds nothing; BM25 inside the hybrid finds most answers
    assert sum(v for k, v in row.items() if k.endswith("success_at_10")) > \
        sum(v for k, v in dense.items() if k.endswith("success_at_10"))


def test_projection_recovers_a_power_law():
    rows = [{"store": "s", "rows": n, "disk_mb": 0.002 * n, "rss_mb": 5 * n ** 0.5, "index_s": 1e-4 * n,
             "test_p99_ms": 2.0} for n in (50_000, 100_000, 500_000)] + [{"store": "one", "rows": 10, "disk_mb": 1,
                                                                       "rss_mb": 1, "index_s": 1, "test_p99_ms": 1}]
    p = bench.project(rows, targets=(5_000_000,))
    assert set(p.store) == {"s"}  # one size only: no fit
    got = dict(zip(p.metric, p["at_5,000,000"]))
    assert got["disk_mb"] == pytest.approx(10_000) and got["rss_mb"] == pytest.approx(5 * 5_000_000 ** 0.5)
    assert got["test_p99_ms"] == pytest.approx(2.0)
    assert dict(zip(p.metric, p.exponent))["index_s"] == pytest.approx(1.0)
