"""Reranking on the 500k-passage corpus (issue 32, part 4): nDCG gain against added latency.

    .venv/bin/python benchmarks/rag_rerank.py                           # cross-encoder at k 20/50/100 (+ LLM at k 20)
    .venv/bin/python benchmarks/rag_rerank.py --llm-queries 0           # cross-encoder only
    .venv/bin/python benchmarks/rag_rerank.py --split test              # the chosen k, reported once

First stage: exact dense retrieval with MiniLM when its vectors are built (corpus embed), else
BM25. The cross-encoder is trained once on --train-queries train-split queries (cached by its
data and settings); the LLM reranker is Qwen2.5-0.5B on llama-server (make model-qwen-0.5b
engine-llama-server), on the first --llm-queries queries per task (each candidate is a request).
Latency: reranking one query's k candidates, one query at a time (timings: run it alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def main(argv=None) -> int:
    import pandas as pd

    from llmarch_lab import LabError, paths
    from llmarch_lab.common import stats
    from llmarch_lab.labs.rag.corpus import evaluate, files, rerank, vectors
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dev", choices=("dev", "test"))
    ap.add_argument("--per-task", type=int, default=100)
    ap.add_argument("--ks", default="20,50,100")
    ap.add_argument("--train-queries", type=int, default=1500, help="train-split queries (the scenario lab uses the same: one cached model)")
    ap.add_argument("--llm-queries", type=int, default=20, help="per task; 0 skips the LLM reranker")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    try:
        ks = [int(k) for k in a.ks.split(",")]
        if min(ks) < 1 or a.per_task < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--ks {a.ks!r} / --per-task {a.per_task}: positive integers") from None
    try:
        c = files.load(a.which)
        q = evaluate.sample(c, a.split, a.per_task)
        index = evaluate.bm25_index(c)
        try:
            vectors.load(c, "minilm-l6")
            first, stage = evaluate.dense_run(c, q, "minilm-l6"), "dense minilm-l6"
        except LabError:
            first, stage = evaluate.bm25_run(c, q, index=index), "bm25s"
        model = rerank.train_cross_encoder(rerank.training_pairs(c, index, a.train_queries))
        runs, lat = {stage: first}, {}
        for k in ks:
            runs[f"+ cross-encoder k={k}"], lat[f"+ cross-encoder k={k}"] = rerank.cross_encoder_rerank(model, c, q, first, k)
        if a.llm_queries:
            from llmarch_lab.llm import engines

            ql = q.groupby("task").head(a.llm_queries)
            with engines.launch("llama-server", "qwen2.5-coder-0.5b-instruct", parallel=1, max_model_len=1024,
                                log_path=paths.cache_dir() / "rag_corpus" / "rerank-llm.log") as eng:
                r, ms = rerank.llm_rerank(eng.endpoint(timeout_s=120), c, ql, first, k=20)
            runs["+ llm qwen0.5b k=20"], lat["+ llm qwen0.5b k=20"] = {**first, **r}, ms
        df = evaluate.table(q, runs)
        if a.llm_queries:  # the LLM rows are scored on their own (smaller) query set
            llm = evaluate.table(ql, {n: runs[n] for n in (stage, "+ llm qwen0.5b k=20")}).assign(queries_note="llm subset")
            df = pd.concat([df[df.retriever != "+ llm qwen0.5b k=20"], llm])
        for name, ms in lat.items():
            p = stats.percentiles(ms, "ms")
            df.loc[df.retriever == name, ["rerank_ms_p50", "rerank_ms_p99"]] = p["ms_p50"], p["ms_p99"]
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pd.set_option("display.width", 250)
    print(df.round(3).to_string(index=False))
    if not a.no_log:
        bench.log_standalone("rag_rerank", "benchmarks/rag_rerank",
                             {"split": a.split, "per_task": a.per_task, "train_queries": a.train_queries,
                              "which": a.which}, Result(tables={"rag_rerank": df}, tags={"first_stage": stage}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
