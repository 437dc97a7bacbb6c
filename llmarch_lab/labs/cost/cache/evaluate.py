"""`llmarch-lab cache eval --pairs FILE.jsonl[.gz] [--out OUT.json]`: read, check, evaluate, write."""

from __future__ import annotations

import time
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.common.files import check_output, dumps_json, json_safe, jsonl_objects, write_atomic
from llmarch_lab.labs.cost.cache.embeddings import EmbeddingStore
from llmarch_lab.labs.cost.cache.grid import CHOSEN
from llmarch_lab.labs.cost.cache.index import CacheConfig
from llmarch_lab.labs.cost.cache.semantic import SemanticCache
from llmarch_lab.labs.cost.cache.verifier import PairVerifier, score_served

# --------------------------------------------------------------------------------------------
# `llmarch-lab cache eval --pairs FILE.jsonl[.gz] [--out OUT.json]`
# --------------------------------------------------------------------------------------------

REQUIRED = ("text_a", "text_b", "label")


def read_pairs(path) -> "pd.DataFrame":  # noqa: F821
    """A {text_a, text_b, label} JSON-lines file (gzip allowed) as a DataFrame; any bad line is a
    LabError naming FILE:LINE and the field."""

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise LabError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    rows = []
    try:
        for n, d in jsonl_objects(path):
            for k in REQUIRED:
                if k not in d:
                    raise LabError(f"{path}:{n}: missing field {k!r}")
            for k in ("text_a", "text_b"):
                if not isinstance(d[k], str) or not d[k].strip():
                    raise LabError(f"{path}:{n}: field {k!r} must be a non-empty string")
            y = d["label"]
            if isinstance(y, bool) or y not in (0, 1):
                raise LabError(f"{path}:{n}: field 'label' must be 0 or 1, got {y!r}")
            rows.append({"text_a": d["text_a"], "text_b": d["text_b"], "label": int(y)})
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise LabError(f"{path}: unreadable ({str(e).splitlines()[0][:120]})") from None
    if not rows:
        raise LabError(f"{path}: no pairs (the file is empty)")
    return pd.DataFrame(rows)


def eval_pairs(df, config: CacheConfig | None = None, latency_sample: int = 200, seed: int = 0,
               verifier: PairVerifier | None = None, progress: bool = False) -> dict:
    """Every distinct text_a into an empty cache, every text_b queried (batched), then the real
    single-query get() timed on a fixed-seed sample of queries."""
    import numpy as np

    from llmarch_lab.common import stats

    config = config or CHOSEN
    df = df.reset_index(drop=True)
    cache = SemanticCache(config, verifier=verifier)
    entries = list(dict.fromkeys(df["text_a"].str.strip()))
    queries = list(df["text_b"].str.strip())
    store = EmbeddingStore.get(config.embedder)
    t0 = time.perf_counter()
    cache.put_many(entries, list(range(len(entries))), vecs=store.encode(entries, progress=progress))
    put_s = time.perf_counter() - t0
    hits = cache.get_many(queries, vecs=store.encode(queries, progress=progress))
    served = [h.key if h is not None else None for h in hits]
    scored = score_served(df, served)
    # The command's contract (the definition): a hit is correct only when it returned the
    # pair's own text_a. A query that is word for word another pair's text_a is then a wrong hit
    # for any cache that serves exact repeats, so that share is a floor under wrong_hit_rate; the
    # label-aware rates also accept the query's own text and texts the file labels duplicates of it.
    own = set(entries)
    collide = sum(1 for qq, a in zip(queries, df["text_a"].str.strip()) if qq in own and qq != a)
    res = {"hit_rate": scored["hit_rate_strict"], "wrong_hit_rate": scored["wrong_hit_rate_strict"],
           "hit_rate_label_aware": scored["hit_rate"], "wrong_hit_rate_label_aware": scored["wrong_hit_rate"],
           "exact_collision_rate": collide / max(len(queries), 1), "any_hit_rate": scored["any_hit_rate"]}
    rng = np.random.default_rng(seed)
    lat_hit, lat_miss = [], []
    for i in rng.choice(len(queries), size=min(latency_sample, len(queries)), replace=False):
        t = time.perf_counter()
        h = cache.get(queries[i])
        (lat_hit if h is not None else lat_miss).append((time.perf_counter() - t) * 1e3)
    p = stats.percentiles(lat_hit + lat_miss, "latency_ms")
    return {**res, "n_pairs": int(len(df)), "n_duplicates": int(df["label"].sum()), "n_entries": len(entries),
            "latency_ms_p50": p["latency_ms_p50"], "latency_ms_p95": p["latency_ms_p95"],
            **stats.percentiles(lat_hit, "latency_hit_ms", required=False),
            **stats.percentiles(lat_miss, "latency_miss_ms", required=False),
            "latency_sample": len(lat_hit) + len(lat_miss), "insert_s": round(put_s, 2),
            "config": config.to_dict()}


def eval_pairs_file(pairs: str | Path, out: str | Path | None = None, config: CacheConfig | None = None,
                    latency_sample: int = 200, progress: bool = True) -> dict:
    """The `cache eval` command: read and check FILE, evaluate, write OUT atomically (temp + rename).
    The result holds only JSON values (a NaN or infinity is None), so it prints and writes as valid
    JSON; progress bars (stderr) while FILE's texts are embedded, and on first use the verifier's
    preparation (see grid.default_verifier)."""
    if out is not None:  # before minutes of work, not after
        out = check_output(out, {"--pairs": pairs})
    df = read_pairs(pairs)
    res = json_safe({"pairs_file": str(pairs), **eval_pairs(df, config, latency_sample=latency_sample,
                                                             progress=progress)})
    if out is not None:
        write_atomic(out, dumps_json(res, indent=2) + "\n")
    return res
