"""Part `cache`: the semantic cache on the Quora dev pairs (every text_a cached, every text_b asked):
hit rate vs wrong-hit rate by threshold, with and without the pair verifier, vs GPTCache; FAISS vs
LanceDB lookup latency; a Zipf traffic trace replayed."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from llmarch_lab.labs.cost.parts.base import TraceFields
from llmarch_lab.results import Result


class CacheParams(TraceFields):
    part: Literal["cache"] = "cache"
    cache_pairs: int = Field(0, ge=0, le=1_000_000, description="Quora dev pairs (0 = the fixed 20,000-pair dev subset, cache.dev_pairs(), the chosen cache was measured on; else a seeded sample of the 60,168).")
    near_miss_share: float = Field(0.1, ge=0.0, lt=1.0, description="Share of new requests that are near-misses of an earlier one (non-duplicate Quora pairs).")


REPORT = ("cost cache: Quora dev pairs and a Zipf trace", ["repeat_rate", "paraphrase_share"], {
    "hit_rate": "quality.cache_hit_rate", "wrong_hit_rate": "errors.cache_wrong_hit_rate",
    "gptcache_hit_rate": "quality.gptcache_hit_rate", "gptcache_wrong_hit_rate": "errors.gptcache_wrong_hit_rate",
    "trace_hit_rate": "quality.trace_hit_rate", "trace_wrong_hit_rate": "errors.trace_wrong_hit_rate",
    "calls_saved": "cost.large_calls_saved_share", "hit_p50_ms": "latency.cache_hit_ms_p50",
    "miss_p50_ms": "latency.cache_miss_ms_p50"})


def run(p: CacheParams, res: Result) -> None:
    import numpy as np
    import pandas as pd

    from llmarch_lab.assets import datasets
    from llmarch_lab.labs.cost import cache, trace

    dev = cache.dev_pairs() if not p.cache_pairs else datasets.qqp_pairs().sample(
        n=p.cache_pairs, random_state=p.seed).reset_index(drop=True)
    # Out-of-fold: 3 folds by connected question group, each verifier trained on the other two.
    r, probs, fold = cache.crossfit(dev, n_folds=3, top_k=3, model="hgb")
    grids = {"plain cosine": cache.grid(dev, r, None, cache.COS_GRID),
             "cosine + verifier": cache.grid(dev, r, probs, cache.COS_GRID, cache.PROB_GRID)}
    f0 = fold == 0
    peer = dev[f0].reset_index(drop=True)
    gpt_summary, gpt_grid = cache.gptcache_eval(peer, 0.9, thresholds=[round(0.80 + 0.005 * i, 3) for i in range(40)],
                                                latency_sample=50, progress=False)
    fold0 = {"gptcache (fold 0)": gpt_grid,
             "plain cosine (fold 0)": cache.grid(dev, r, None, cache.COS_GRID, rows_mask=f0),
             "cosine + verifier (fold 0)": cache.grid(dev, r, probs, cache.COS_GRID, cache.PROB_GRID, rows_mask=f0)}
    rows = []
    for name, g in {**grids, **fold0}.items():
        for w in (0.005, 0.01, 0.02):
            b = cache.best_at(g, w)
            rows.append({"system": name, "max_wrong_hit_rate": w, "hit_rate": b["hit_rate"],
                         "wrong_hit_rate": b["wrong_hit_rate"], "threshold": b.get("threshold"),
                         "verifier_threshold": b.get("verifier_threshold")})
    table = pd.DataFrame(rows)
    res.tables["cache_at_wrong_hit"] = table
    key = {"plain cosine": "plain", "cosine + verifier": "verified", "gptcache (fold 0)": "gptcache_fold0",
           "plain cosine (fold 0)": "plain_fold0", "cosine + verifier (fold 0)": "verified_fold0"}
    for t in table.itertuples():
        res.add(f"quality.{key[t.system]}_hit_rate_at_{int(round(t.max_wrong_hit_rate * 1000))}pm_wrong", t.hit_rate)
    chosen = cache.grid(dev, r, probs, [cache.CHOSEN.threshold], [cache.CHOSEN.verifier_threshold]).iloc[0]
    res.add("quality.cache_hit_rate", chosen["hit_rate"])
    res.add("errors.cache_wrong_hit_rate", chosen["wrong_hit_rate"])
    for f in range(3):
        g = cache.grid(dev, r, probs, [cache.CHOSEN.threshold], [cache.CHOSEN.verifier_threshold], rows_mask=fold == f).iloc[0]
        res.tags[f"cost.cache_fold{f}"] = f"hit {g['hit_rate']:.3f} at wrong-hit {g['wrong_hit_rate']:.4f}"
    res.figures["cache_hit_vs_wrong"] = cache.sweep_plot({k: v for k, v in {**grids, **fold0}.items()}, max_wrong=0.03)
    vecs = np.asarray(cache.embed(list(dict.fromkeys(dev["text_a"].str.strip()))), dtype="float32")
    lat = cache.index_latency(vecs)
    for k, v in lat.items():
        if k.startswith(("faiss_ms", "lancedb_ms")):
            res.add(f"latency.index_{k}", v)
    res.tags["cost.index_same_top1_share"] = f"{lat['same_top1_share']:.3f} over {lat['n_entries']} entries"
    res.texts["cache_config.json"] = json.dumps(cache.CHOSEN.to_dict(), indent=1)
    res.tags["cost.cache_numbers"] = (f"label-aware hit / wrong-hit, out-of-fold over {len(dev)} dev pairs "
                                      "(3 group folds); GPTCache and its matched rows on fold 0 only")
    tr = trace.build_trace(p.trace_requests, p.repeat_rate, p.paraphrase_share, p.near_miss_share, p.zipf_s, p.seed)
    rep = trace.replay(cache.SemanticCache(cache.CHOSEN), tr)
    summ = trace.summary(rep)
    res.add("quality.trace_hit_rate", summ["hit_rate"])
    res.add("errors.trace_wrong_hit_rate", summ["wrong_hit_rate"])
    res.add("cost.large_calls_saved_share", summ["large_calls_saved_share"])
    for k, v in summ.items():
        if k.startswith("latency_") and v is not None:
            res.add("latency.trace_" + k.removeprefix("latency_"), v)
    res.tables["trace_replay"] = rep
    res.tags["cost.trace"] = (f"{p.trace_requests} requests, repeat {p.repeat_rate}, paraphrase share "
                              f"{p.paraphrase_share}, near-miss {p.near_miss_share}, zipf {p.zipf_s}, seed {p.seed}; "
                              "the verifier was trained on dev_pairs(), which the trace's Quora texts may overlap")
