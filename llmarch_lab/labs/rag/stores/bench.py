"""Stores side by side: each store ingests the same vectors, builds its index, and walks its search
ladder on dev queries until recall@10 against exact search reaches the goal; that setting is then
measured once on test queries, unfiltered and with each filter.

    rows = bench.run_store("lancedb", mat, payload, qv_dev, qv_test, workdir)

Latency is one query at a time from this process (p50/p99 over the queries, after a warm-up), the
client call included. Memory: the growth of this process's resident set from before the store
opened (the matrix is already in memory) to after the last query, plus a server's own resident set.
Disk: the bytes under the store's folder after the index build.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

from llmarch_lab.common import stats
from llmarch_lab.labs.rag.corpus.evaluate import exact_topk
from llmarch_lab.labs.rag.stores import base
from llmarch_lab.labs.rag.stores.base import Filter

GOAL = 0.95
FILTERS = (Filter(source="boolq"), Filter(max_chars=300), Filter(source="quora", max_chars=60))


def payload_of(corpus):
    import pandas as pd

    return pd.DataFrame({"source": corpus.passages.source.to_numpy(),
                         "n_chars": corpus.passages.text.str.len().to_numpy()})


def truth(mat, qv, payload=None, flt: Filter | None = None, k: int = 10):
    """Exact top-k row numbers (over the rows a filter keeps)."""
    import numpy as np

    if flt is None:
        return exact_topk(mat, qv, k)[0]
    rows = np.flatnonzero(flt.mask(payload))
    idx, _ = exact_topk(mat[rows], qv, k)
    return rows[idx]


def measure(store, qv, want, setting: dict, flt: Filter | None = None, k: int = 10, warmup: int = 5) -> dict:
    for q in qv[:warmup]:
        store.search(q, k, setting, flt)
    lat, rec = [], []
    for q, t in zip(qv, want):
        t0 = time.perf_counter()
        got = store.search(q, k, setting, flt)
        lat.append((time.perf_counter() - t0) * 1000)
        rec.append(len(set(got) & set(t[:k].tolist())) / min(k, len(t)))
    pct = stats.percentiles(lat, "ms")
    return {"p50_ms": pct["ms_p50"], "p99_ms": pct["ms_p99"], "recall_at_10": sum(rec) / len(rec)}


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def relevance(store, queries, qv, pids, setting: dict, hybrid: bool = False) -> dict:
    """nDCG@10 / success@10 per task of the store's answers at a setting (dense, or its own hybrid
    when `hybrid`), with the query latency: {column: value}."""
    from llmarch_lab.labs.rag.corpus import evaluate

    run, lat = {}, []
    for qid, text, v in zip(queries.qid, queries.text, qv):
        t0 = time.perf_counter()
        rows = store.hybrid(v, text, 10, setting) if hybrid else store.search(v, 10, setting)
        lat.append((time.perf_counter() - t0) * 1000)
        run[qid] = {pids[r]: float(10 - i) for i, r in enumerate(rows)}
    rel = evaluate.table(queries, {"x": run}, k=10)
    tag = "hybrid" if hybrid else "dense"
    pct = stats.percentiles(lat, "ms")
    return {f"{tag} p50_ms": pct["ms_p50"], f"{tag} p99_ms": pct["ms_p99"],
            **{f"{tag} {t} ndcg_at_10": v for t, v in zip(rel.task, rel.ndcg_at_10)},
            **{f"{tag} {t} success_at_10": v for t, v in zip(rel.task, rel.success_at_10)}}


def run_store(name: str, mat, payload, qv_dev, qv_test, workdir: Path, goal: float = GOAL,
              filters=FILTERS, test_queries=None, pids=None) -> tuple[dict, list[dict]]:
    """(summary row, ladder rows) for one store; the store's folder is removed afterwards. With
    `test_queries` (the judged queries behind qv_test) and `pids` (row -> passage id), the row
    adds relevance per task at the chosen setting, dense and, when the payload has `text`, the
    store's own hybrid."""
    shutil.rmtree(workdir, ignore_errors=True)
    gc.collect()
    rss0 = _rss()
    store = base.make(name, workdir)
    try:
        t0 = time.perf_counter()
        store.ingest(mat, payload)
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        params = store.build_index()
        index_s = time.perf_counter() - t0
        disk = store.disk_bytes()
        want_dev, want_test = truth(mat, qv_dev), truth(mat, qv_test)
        ladder, chosen = [], None
        for setting in store.ladder:
            m = measure(store, qv_dev, want_dev, setting)
            ladder.append({"store": name, "setting": _label(setting), **m})
            if m["recall_at_10"] >= goal:
                chosen = setting
                break
        chosen = chosen or store.ladder[-1]
        row = {"store": name, "rows": len(mat), "ingest_s": ingest_s, "ingest_per_s": len(mat) / ingest_s,
               "index_s": index_s, "disk_mb": disk / 2**20, "index": _label(params),
               "setting": _label(chosen), **{f"test_{k}": v for k, v in measure(store, qv_test, want_test, chosen).items()}}
        for flt in filters:
            m = measure(store, qv_test, truth(mat, qv_test, payload, flt), chosen, flt)
            row.update({f"{flt.label()} {k}": v for k, v in m.items()})
        if test_queries is not None:
            row.update(relevance(store, test_queries, qv_test, pids, chosen))
            if "text" in payload:
                row.update(relevance(store, test_queries, qv_test, pids, chosen, hybrid=True))
        row["rss_mb"] = (_rss() - rss0 + store.server_rss_bytes()) / 2**20
        return row, ladder
    finally:
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _label(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


PROJECTED = ("disk_mb", "rss_mb", "index_s", "test_p99_ms")


def project(rows, targets=(5_000_000, 50_000_000), metrics=PROJECTED):
    """Per store and metric, a power law metric = a * rows^b fitted (least squares in log-log) to
    the measured table sizes, evaluated at `targets`: DataFrame(store, metric, exponent, then one
    column per target). Stores measured at fewer than two sizes are left out. An extrapolation
    over one or two decades: a projection to check, not a measurement."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(rows)
    out = []
    for store, g in df.groupby("store"):
        if g["rows"].nunique() < 2:
            continue
        for m in metrics:
            ok = g[g[m] > 0]
            if ok["rows"].nunique() < 2:
                continue
            b, a = np.polyfit(np.log(ok["rows"].to_numpy(float)), np.log(ok[m].to_numpy(float)), 1)
            out.append({"store": store, "metric": m, "exponent": b,
                        **{f"at_{int(t):,}": float(np.exp(a) * t ** b) for t in targets}})
    return pd.DataFrame(out)
