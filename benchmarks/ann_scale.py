"""ANN scale benchmark: LanceDB IVF-PQ and IVF-HNSW-SQ on N x 384-dim vectors.

    .venv/bin/python benchmarks/ann_scale.py --n 100000                 # a few minutes
    .venv/bin/python benchmarks/ann_scale.py --n 1000000 --log          # the issue's scale, to MLflow
    .venv/bin/python benchmarks/ann_scale.py --n 20000 --queries 50 --indexes ivf_pq   # smoke test

Question: can LanceDB on this machine serve top-10 nearest neighbours over ~1M MiniLM-sized
vectors with p99 <= 50 ms at recall@10 >= 0.95, and with which index and search settings?

Data (stated, not real embeddings): clustered synthetic vectors. 1,000 cluster centres drawn
N(0, I); each point = its centre + 0.9 x a Gaussian point on its cluster's own random 32-dim
subspace + 0.3 x isotropic noise, L2-normalised, so two points of one cluster have cosine ~0.5
and of different clusters ~0, and a point's nearest neighbours lie in its own cluster. Real sentence embeddings are clustered by topic and have
a low intrinsic dimension; isotropic 384-dim noise alone would make every neighbour nearly
equidistant and no ANN index meaningful. Queries are fresh draws from the same distribution (not in the table).
Ground truth = exact cosine top-10 by brute force in numpy. Recall@10 = |ANN top-10 ∩ exact| / 10.
Latency = one query at a time through the LanceDB Python API, after a warm-up, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LANCEDB_LOG", "error")

DIM = 384
LATENT = 32
CLUSTERS = 1000


def make_vectors(n: int, seed: int, stream: int = 0, batch: int = 100_000):
    """Yield (start, float32 batch) of clustered synthetic unit vectors (see module docstring).
    `seed` fixes the clusters and subspace; `stream` picks independent draws (0 table, 1 queries)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    # One random 32-dim subspace per cluster: topics vary along their own few directions.
    bases = (rng.standard_normal((CLUSTERS, LATENT, DIM)) / np.sqrt(LATENT)).astype(np.float32)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        brng = np.random.default_rng([seed, stream, start])
        label = brng.integers(0, CLUSTERS, m)
        z = brng.standard_normal((m, LATENT)).astype(np.float32)
        x = centres[label] + 0.3 * brng.standard_normal((m, DIM)).astype(np.float32)
        order = np.argsort(label, kind="stable")
        bounds = np.searchsorted(label[order], np.arange(CLUSTERS + 1))
        for c in range(CLUSTERS):  # grouped by cluster: one small matmul each, no (m, 32, 384) gather
            idx = order[bounds[c]:bounds[c + 1]]
            if len(idx):
                x[idx] += 0.9 * (z[idx] @ bases[c])
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield start, x.astype(np.float32)


def exact_topk(data, queries, k: int = 10, block: int = 200_000):
    """Exact cosine top-k ids (vectors are unit length, so cosine = dot product)."""
    import numpy as np

    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for s in range(0, len(data), block):
        sims = queries @ data[s:s + block].T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def build_table(db, data):
    import pyarrow as pa

    def batches():
        for s in range(0, len(data), 100_000):
            chunk = data[s:s + 100_000]
            yield pa.record_batch({"id": pa.array(range(s, s + len(chunk)), pa.int64()),
                                   "vector": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), DIM)})

    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), DIM))])
    return db.create_table("vectors", batches(), schema=schema, mode="overwrite")


def measure(table, queries, truth, k: int = 10, warmup: int = 5, **opts):
    """(p50 ms, p99 ms, recall@k) for one search setting, one query at a time."""
    import numpy as np

    def one(q):
        s = table.search(q).distance_type("cosine").limit(k)
        if opts.get("exact"):
            s = s.bypass_vector_index()
        if opts.get("nprobes"):
            s = s.nprobes(opts["nprobes"])
        if opts.get("refine"):
            s = s.refine_factor(opts["refine"])
        if opts.get("ef"):
            s = s.ef(opts["ef"])
        return s.select(["id"]).to_arrow()["id"].to_numpy()

    for q in queries[:warmup]:
        one(q)
    lat, hits = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        ids = one(q)
        lat.append((time.perf_counter() - t0) * 1000)
        hits.append(len(set(ids.tolist()) & set(t[:k].tolist())) / k)
    from llmarch_lab.common import stats

    pct = stats.percentiles(lat, "ms")
    return pct["ms_p50"], pct["ms_p99"], float(np.mean(hits))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the table")
    ap.add_argument("--queries", type=int, default=200, help="queries per setting")
    ap.add_argument("--indexes", default="ivf_pq,ivf_hnsw_sq", help="comma list: ivf_pq, ivf_hnsw_sq")
    ap.add_argument("--nprobes", default="10,20,40", help="IVF-PQ nprobes values")
    ap.add_argument("--refine", default="0,5,20", help="IVF-PQ refine_factor values (0 = off)")
    ap.add_argument("--ef", default="50,100,200", help="HNSW ef values")
    ap.add_argument("--exact-queries", type=int, default=30, help="queries timed for the flat (exact) baseline")
    ap.add_argument("--dir", default="", help="LanceDB folder (default: a temporary one, removed after)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="also write the table as CSV here")
    ap.add_argument("--log", action="store_true", help="log the table and metrics to MLflow")
    args = ap.parse_args(argv)

    import lancedb
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from llmarch_lab.labs.rag import store

    t0 = time.perf_counter()
    data = np.empty((args.n, DIM), dtype=np.float32)
    for s, x in make_vectors(args.n, args.seed):
        data[s:s + len(x)] = x
    _, queries = next(make_vectors(args.queries, args.seed, stream=1))
    truth = exact_topk(data, queries)
    print(f"data {args.n} x {DIM} + exact top-10 for {args.queries} queries: {time.perf_counter() - t0:.1f}s",
          flush=True)
    folder = args.dir or tempfile.mkdtemp(prefix="ann-scale-")
    rows = []
    try:
        db = lancedb.connect(folder)
        t0 = time.perf_counter()
        table = build_table(db, data)
        write_s = time.perf_counter() - t0
        print(f"table written: {write_s:.1f}s", flush=True)
        nq = min(args.exact_queries, args.queries)
        p50, p99, rec = measure(table, queries[:nq], truth[:nq], exact=True, warmup=2)
        rows.append(dict(index="flat (exact scan)", build_s=0.0, setting="-", p50_ms=p50, p99_ms=p99, recall_at_10=rec))
        print(rows[-1], flush=True)
        for kind in [k for k in args.indexes.split(",") if k]:
            cfg = store.index_config(kind, args.n, DIM)
            t0 = time.perf_counter()
            table.create_index("vector", config=cfg, replace=True)
            build_s = time.perf_counter() - t0
            print(f"{kind} built in {build_s:.1f}s ({cfg})", flush=True)
            if kind == "ivf_pq":
                settings = [dict(nprobes=int(n), refine=int(r)) for n in args.nprobes.split(",")
                            for r in args.refine.split(",")]
            else:
                settings = [dict(nprobes=cfg.num_partitions or 1, ef=int(e)) for e in args.ef.split(",")]
            for opts in settings:
                p50, p99, rec = measure(table, queries, truth, **opts)
                label = ", ".join(f"{k}={v}" for k, v in opts.items())
                rows.append(dict(index=kind, build_s=build_s, setting=label, p50_ms=p50, p99_ms=p99, recall_at_10=rec))
                print(rows[-1], flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    df = pd.DataFrame(rows)
    df["meets_goal"] = (df.p99_ms <= 50) & (df.recall_at_10 >= 0.95)
    print(f"\nLanceDB {lancedb.__version__}, n={args.n:,} x {DIM} clustered synthetic, {args.queries} queries, "
          f"table write {write_s:.1f}s")
    print(df.to_markdown(index=False, floatfmt=".3f"))
    if args.out:
        df.to_csv(args.out, index=False)
    if args.log:
        log(df, args, write_s)
    return df


def log(df, args, write_s):
    """One MLflow run (experiment `interactive`) with the table and the best setting meeting the goal."""
    from llmarch_lab.results import Result
    from llmarch_lab.run import bench

    res = Result(tables={"ann_scale": df}, tags={"data": "clustered synthetic 384-dim"})
    res.add("latency.table_write_s", write_s)
    ok = df[df.meets_goal]
    if len(ok):
        best = ok.sort_values("p99_ms").iloc[0]
        res.add("latency.query_ms_p99", best.p99_ms)
        res.add("quality.recall_at_10", best.recall_at_10)
        res.tags["best_setting"] = f"{best['index']} {best.setting}"
    bench.log_standalone("ann_scale", "benchmarks/ann_scale", {"n": args.n, "queries": args.queries, "seed": args.seed}, res)


if __name__ == "__main__":
    main()
