"""Vector stores side by side on the 500k-passage corpus's MiniLM vectors (issue 32, part 2).

    make rag-corpus && .venv/bin/python -m llmarch_lab.labs.rag.corpus embed     # corpus + vectors
    .venv/bin/python benchmarks/rag_stores.py                                    # every store, logged to MLflow
    .venv/bin/python benchmarks/rag_stores.py --stores lancedb --queries 100     # one store, quicker
    .venv/bin/python benchmarks/rag_stores.py --rows 50000,125000,250000         # the scaling curve (subsets)

Each store ingests the same matrix, builds its ANN index, and walks its search ladder on dev
queries until recall@10 against exact search reaches 0.95; that setting is measured once on test
queries, unfiltered and with each filter (stores/bench.py says how), and scored for relevance per
task at that setting: dense, and the store's own hybrid (BM25 / full-text + dense, RRF). Run it alone on the machine:
latency and ingest rate are timings. Stores run one after another in this process, so the
resident-memory column of a later store may include allocator growth left by an earlier one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def main(argv=None) -> int:
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError, paths
    from llmarch_lab.labs.rag.corpus import evaluate, files, vectors
    from llmarch_lab.labs.rag.stores import base
    from llmarch_lab.labs.rag.stores import bench as sbench
    from llmarch_lab.llm.embeddings import Embedder
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default=",".join(base.STORES))
    ap.add_argument("--queries", type=int, default=300, help="dev and test queries each (spread over the tasks)")
    ap.add_argument("--embedder", default="minilm-l6")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--rows", default="", help="comma-separated table sizes: each store on a seeded random "
                    "subset of that many passages (the scaling curve; default: all of them)")
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    if a.queries < 10:
        raise SystemExit(f"--queries {a.queries}: at least 10")
    try:
        sizes = [int(x) for x in a.rows.split(",") if x] or [0]
    except ValueError:
        raise SystemExit(f"--rows {a.rows!r}: comma-separated integers") from None
    try:
        c = files.load(a.which)
        full = np.array(vectors.load(c, a.embedder))  # in memory: the stores' RSS is measured from here
        payload_full = sbench.payload_of(c).assign(text=vectors.texts(c))
        pids_full = c.passages.pid.to_numpy()
        emb = Embedder(a.embedder)
        per = max(1, a.queries // 3)
        qdf = {s: evaluate.sample(c, s, per) for s in ("dev", "test")}
        qv = {s: emb.embed(qdf[s].text.tolist(), progress=False) for s in ("dev", "test")}
        rows, ladders = [], []
        for n in sizes:
            take = np.sort(np.random.default_rng(0).permutation(len(full))[:n]) if 0 < n < len(full) else None
            mat = full if take is None else full[take]
            payload = payload_full if take is None else payload_full.iloc[take].reset_index(drop=True)
            for name in [s for s in a.stores.split(",") if s]:
                print(f"{name} on {len(mat):,} rows: ingest, index, ladder ...", flush=True)
                row, ladder = sbench.run_store(
                    name, mat, payload, qv["dev"], qv["test"], paths.cache_dir() / "rag_stores" / name,
                    test_queries=qdf["test"] if take is None else None,  # relevance on the whole corpus only
                    pids=pids_full)
                rows.append(row)
                ladders += [{**r, "rows": len(mat)} for r in ladder]
                print(pd.Series(row).to_string(), flush=True)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    df, lad = pd.DataFrame(rows), pd.DataFrame(ladders)
    pd.set_option("display.width", 250)
    print(lad.round(3).to_string(index=False))
    print(df.round(2).T.to_string())
    proj = sbench.project(rows)
    if len(proj):
        print("projection (power law fitted to the measured sizes; an extrapolation, not a measurement):")
        print(proj.round(2).to_string(index=False))
    if not a.no_log:
        res = Result(tables={"rag_stores": df, "rag_stores_ladder": lad, "rag_stores_projection": proj},
                     tags={"corpus": a.which, "embedder": a.embedder})
        bench.log_standalone("rag_stores", "benchmarks/rag_stores",
                             {"queries": a.queries, "which": a.which, "rows": a.rows or "all"}, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
