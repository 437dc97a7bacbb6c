"""The seed's first scenario at 500k passages: end-to-end retrieval latency (query embedding +
ANN search + optional cross-encoder rerank), one thread and both cores, with relevance per task.

    .venv/bin/python benchmarks/rag_scenario.py --store qdrant --setting hnsw_ef=64     # after rag_stores.py chose it
    .venv/bin/python benchmarks/rag_scenario.py --store lancedb --setting nprobes=20,refine_factor=10 --rerank-k 0

The store is built once (the chosen store at the setting benchmarks/rag_stores.py found on dev);
queries are a seeded test-split draw per task, one at a time. Query embedding is MiniLM through
the ONNX query encoder (the lab's query path); the reranker is the cross-encoder of
benchmarks/rag_rerank.py (trained on the train split, cached). Threads: ONNX Runtime's and
torch's intra-op threads (the stores' own search stays single-threaded). Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def parse_setting(text: str) -> dict:
    out = {}
    for part in [p for p in text.split(",") if p]:
        k, _, v = part.partition("=")
        if not v:
            raise SystemExit(f"--setting {text!r}: give key=value pairs, e.g. hnsw_ef=64")
        out[k] = int(v) if v.isdigit() else v
    return out


def run_pipeline(c, store, setting, q, threads: int, ce, rerank_k: int):
    import numpy as np
    import torch

    from llmarch_lab.labs.rag.corpus import vectors
    from llmarch_lab.llm.embeddings import Embedder

    torch.set_num_threads(threads)
    emb = Embedder("minilm-l6", query_encoder="onnx", query_threads=threads)
    emb.prepare_query_encoder()
    pids, texts = c.passages.pid.to_numpy(), vectors.texts(c)
    run, t_emb, t_search, t_rr = {}, [], [], []
    for qid, text in zip(q.qid, q.text):
        t0 = time.perf_counter()
        qv = emb.embed_query(text)
        t1 = time.perf_counter()
        rows = store.search(np.asarray(qv, dtype=np.float32), max(10, rerank_k), setting)
        t2 = time.perf_counter()
        order = rows
        if ce is not None and rerank_k:
            scores = ce.predict([(text, texts[r]) for r in rows[:rerank_k]], batch_size=32, show_progress_bar=False)
            order = [rows[i] for i in np.argsort(-np.asarray(scores), kind="stable")] + rows[rerank_k:]
        t3 = time.perf_counter()
        run[qid] = {pids[r]: float(len(order) - i) for i, r in enumerate(order)}
        t_emb.append((t1 - t0) * 1000)
        t_search.append((t2 - t1) * 1000)
        t_rr.append((t3 - t2) * 1000)
    return run, t_emb, t_search, t_rr


def main(argv=None) -> int:
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError, paths
    from llmarch_lab.common import stats
    from llmarch_lab.labs.rag.corpus import evaluate, files, rerank, vectors
    from llmarch_lab.labs.rag.stores import base
    from llmarch_lab.labs.rag.stores import bench as sbench
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="qdrant")
    ap.add_argument("--setting", default="", help="the store's search setting, key=value[,key=value]")
    ap.add_argument("--per-task", type=int, default=200)
    ap.add_argument("--rerank-k", type=int, default=20, help="0: no reranking")
    ap.add_argument("--train-queries", type=int, default=3000)
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    setting = parse_setting(a.setting)
    rows = []
    try:
        c = files.load(a.which)
        q = evaluate.sample(c, "test", a.per_task)
        ce = None
        if a.rerank_k:
            from sentence_transformers.cross_encoder import CrossEncoder

            model = rerank.train_cross_encoder(rerank.training_pairs(c, evaluate.bm25_index(c), a.train_queries))
            ce = CrossEncoder(str(model), device="cpu")
        mat = np.array(vectors.load(c, "minilm-l6"))
        store = base.make(a.store, paths.cache_dir() / "rag_scenario" / a.store)
        try:
            store.ingest(mat, sbench.payload_of(c))
            store.build_index()
            for threads in (1, 2):
                for k in sorted({0, a.rerank_k}):
                    run, te, ts, tr = run_pipeline(c, store, setting, q, threads, ce if k else None, k)
                    total = [x + y + z for x, y, z in zip(te, ts, tr)]
                    rel = evaluate.table(q, {"x": run})
                    row = {"threads": threads, "pipeline": f"embed + {a.store} search" + (f" + rerank k={k}" if k else ""),
                           **{f"{n}_ms_{p}": stats.percentiles(v, "ms")[f"ms_{p}"]
                              for n, v in (("embed", te), ("search", ts), ("rerank", tr), ("total", total))
                              for p in ("p50", "p99")},
                           **{f"{t}_ndcg_at_10": v for t, v in zip(rel.task, rel.ndcg_at_10)},
                           **{f"{t}_success_at_10": v for t, v in zip(rel.task, rel.success_at_10)}}
                    rows.append(row)
                    print(pd.Series(row).to_string(), flush=True)
        finally:
            store.close()
            import shutil

            shutil.rmtree(paths.cache_dir() / "rag_scenario" / a.store, ignore_errors=True)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(df.round(3).T.to_string())
    if not a.no_log:
        bench.log_standalone("rag_scenario", "benchmarks/rag_scenario",
                             {"store": a.store, "setting": a.setting, "per_task": a.per_task, "rerank_k": a.rerank_k,
                              "which": a.which}, Result(tables={"rag_scenario": df}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
