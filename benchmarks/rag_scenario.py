"""The seed's first scenario at 500k passages: end-to-end retrieval latency (query embedding +
ANN search + optional cross-encoder rerank), one thread and both cores, with relevance per task
against BM25. The run itself is the `rag_scenario` lab (llmarch_lab/labs/rag/corpus/scenario.py,
notebook 31_rag_500k); this script runs it without a notebook and logs it to MLflow.

    .venv/bin/python benchmarks/rag_scenario.py --store qdrant --setting hnsw_ef=64     # after rag_stores.py chose it
    .venv/bin/python benchmarks/rag_scenario.py --store lancedb --setting nprobes=20,refine_factor=10 --rerank-k 0

Run it alone on the machine: latencies are timings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def main(argv=None) -> int:
    import pandas as pd
    from pydantic import ValidationError

    from llmarch_lab import LabError
    from llmarch_lab.labs.rag.corpus.scenario import ScenarioParams, run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="qdrant")
    ap.add_argument("--setting", default="hnsw_ef=64", help="the store's search setting, key=value[,key=value]")
    ap.add_argument("--per-task", type=int, default=200)
    ap.add_argument("--rerank-k", type=int, default=20, help="0: no reranking")
    ap.add_argument("--train-queries", type=int, default=1500)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    try:
        params = ScenarioParams(which=a.which, store=a.store, setting=a.setting, per_task=a.per_task,
                                rerank_k=a.rerank_k, train_queries=a.train_queries, threads=a.threads)
        res = run(params)
    except ValidationError as err:
        e = err.errors()[0]
        print(f"error: --{str(e['loc'][0]).replace('_', '-')}: {e['msg']}", file=sys.stderr)
        return 2
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pd.set_option("display.width", 250)
    print(res.tables["pipeline"].round(2).to_string(index=False))
    print(res.tables["relevance"].round(3).to_string(index=False))
    print(pd.Series(res.metrics).round(3).to_string())
    if not a.no_log:
        bench.log_standalone("rag_scenario", "benchmarks/rag_scenario", params.model_dump(), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
