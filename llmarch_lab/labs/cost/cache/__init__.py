"""Semantic cache: MiniLM embeddings in FAISS (or LanceDB), a cosine threshold, a calibrated pair
verifier over cheap features as a second stage, TTL and size-bounded LRU eviction.

    from llmarch_lab.labs.cost import cache
    c = cache.SemanticCache(cache.CHOSEN)
    c.put("How do I learn Python?", "answer ...")
    hit = c.get("How can I learn Python?")        # Hit(key, answer, similarity, verifier_prob, latency_ms) or None
    cache.eval_pairs_file("pairs.jsonl.gz", "out.json")   # `llmarch-lab cache eval`

One module a job (each importing only those before it): embeddings.py (cached text embeddings),
features.py (pair features), index.py (CacheConfig, FAISS / LanceDB indexes, the hit decision,
index latency), verifier.py (the pair verifier, retrieval over a pairs file), grid.py (dev-file
grid, cross-fitting, CHOSEN), semantic.py (SemanticCache), gptcache_peer.py (the GPTCache peer),
evaluate.py (`llmarch-lab cache eval`). This package re-exports their public names.
"""

from llmarch_lab.labs.cost.cache.embeddings import EMBED_BATCH, EmbeddingStore, embed, embedder_tag, load_model, store_dir
from llmarch_lab.labs.cost.cache.evaluate import REQUIRED, eval_pairs, eval_pairs_file, read_pairs
from llmarch_lab.labs.cost.cache.features import FEATURES, FeatureMaker
from llmarch_lab.labs.cost.cache.gptcache_peer import gptcache_eval
from llmarch_lab.labs.cost.cache.grid import (
    CHOSEN,
    COS_GRID,
    DEV_SEED,
    DEV_SUBSET,
    PROB_GRID,
    TARGET_WRONG,
    best_at,
    choose_config,
    crossfit,
    default_verifier,
    dev_pairs,
    grid,
    sweep,
    sweep_plot,
)
from llmarch_lab.labs.cost.cache.index import (
    INDEXES,
    VERIFIERS,
    CacheConfig,
    FaissIndex,
    LanceIndex,
    decide,
    index_latency,
    make_index,
)
from llmarch_lab.labs.cost.cache.semantic import CacheStats, Hit, SemanticCache
from llmarch_lab.labs.cost.cache.verifier import (
    VERIFIER_VERSION,
    PairVerifier,
    Retrieval,
    curve,
    is_correct,
    load_verifier,
    pair_groups,
    relations,
    retrieve,
    score_served,
    train_verifier,
    verifier_path,
)

__all__ = ["best_at", "cache", "CacheConfig", "CacheStats", "choose_config", "CHOSEN", "COS_GRID", "crossfit",
           "curve", "decide", "default_verifier", "dev_pairs", "DEV_SEED", "DEV_SUBSET", "embed",
           "EMBED_BATCH", "embedder_tag", "EmbeddingStore", "eval_pairs", "eval_pairs_file", "FaissIndex",
           "FeatureMaker", "FEATURES", "gptcache_eval", "grid", "Hit", "index_latency", "INDEXES",
           "is_correct", "LanceIndex", "load_model", "load_verifier", "make_index", "pair_groups",
           "PairVerifier", "PROB_GRID", "read_pairs", "relations", "REQUIRED", "Retrieval", "retrieve",
           "score_served", "SemanticCache", "store_dir", "sweep", "sweep_plot", "TARGET_WRONG",
           "train_verifier", "VERIFIER_VERSION", "verifier_path", "VERIFIERS"]
