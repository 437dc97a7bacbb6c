"""Relevance on the 500k-passage corpus: exact dense retrieval per embedder and BM25, per task.

    make rag-corpus                                                       # the corpus (~35 s)
    .venv/bin/python -m llmarch_lab.labs.rag.corpus embed --embedder minilm-l6   # vectors (resumable; ~1 h here)
    .venv/bin/python benchmarks/rag_corpus.py --split test --per-task 1000        # the table, logged to MLflow

Dense search here is exact (a matrix product over every passage): it is the reference the ANN
stores are held to, and its relevance is the embedder's, not an index's. Embedders without a
built matrix are skipped with a line saying so. The figures are one seeded draw of queries per
task from one split (dev for choices, test reported once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def main(argv=None) -> int:
    from llmarch_lab import LabError
    from llmarch_lab.labs.rag.corpus import evaluate, files, vectors
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dev", choices=("train", "dev", "test"))
    ap.add_argument("--per-task", type=int, default=500)
    ap.add_argument("--embedders", default="minilm-l6", help="comma-separated embedder specs")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    if a.per_task < 1:
        raise SystemExit(f"--per-task {a.per_task}: at least 1")
    try:
        c = files.load(a.which)
        q = evaluate.sample(c, a.split, a.per_task)
        runs, secs = {}, {}
        for spec in [s for s in a.embedders.split(",") if s]:
            try:
                vectors.load(c, spec)
            except LabError as err:
                print(f"skip {spec}: {err}")
                continue
            t0 = time.perf_counter()
            runs[f"dense {spec} (exact)"] = evaluate.dense_run(c, q, spec)
            secs[f"dense {spec} (exact)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = evaluate.bm25_index(c)
        t1 = time.perf_counter()
        runs["bm25s"] = evaluate.bm25_run(c, q, index=index)
        secs["bm25s"] = time.perf_counter() - t1
        for name in [n for n in runs if n.startswith("dense")]:  # the lab's hybrid: RRF of dense and BM25
            runs[f"hybrid rrf ({name.split()[1]} + bm25s)"] = evaluate.fuse([runs[name], runs["bm25s"]])
        df = evaluate.table(q, runs)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import pandas as pd

    pd.set_option("display.width", 200)
    print(f"{len(c.passages):,} passages; split {a.split}; bm25 index built in {t1 - t0:.0f} s")
    print(df.round(3).to_string(index=False))
    if not a.no_log:
        res = Result(tables={"rag_corpus_relevance": df}, tags={"split": a.split, "corpus": a.which})
        dense = df[df.retriever != "bm25s"]
        if len(dense):  # the best dense retriever's mean over the tasks
            res.add("quality.ndcg_at_10", float(dense.groupby("retriever").ndcg_at_10.mean().max()))
        bench.log_standalone("rag_corpus", "benchmarks/rag_corpus",
                             {"split": a.split, "per_task": a.per_task, "which": a.which,
                              "passages": len(c.passages)}, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
