"""Peer: GPTCache 0.1.44 through its own get/put API, on the same pairs."""

from __future__ import annotations

import time

from llmarch_lab import LabError
from llmarch_lab.labs.cost.cache.embeddings import EmbeddingStore, load_model
from llmarch_lab.labs.cost.cache.verifier import relations, score_served

# --------------------------------------------------------------------------------------------
# Peer: GPTCache 0.1.44 through its own get/put API
# --------------------------------------------------------------------------------------------

def _no_pip(package, *_, **__):
    raise LabError(f"gptcache wanted to pip install {package!r}; it must be pre-installed")


def gptcache_eval(pairs_df, threshold: float = 0.9, thresholds=None, embedder: str = "minilm-l6",
                  latency_sample: int = 100, seed: int = 0, progress: bool = True):
    """GPTCache on the same task: every distinct text_a put() into an empty cache (sqlite + faiss,
    SearchDistanceEvaluation), every text_b get(). Its score is max_distance - squared L2, clipped
    to [0, 4], and a hit needs score >= 4 * similarity_threshold; on normalized MiniLM vectors that
    is cosine >= 2 * similarity_threshold - 1. The evaluation records each query's best score, so a
    list of `thresholds` is swept after one pass (exactly as separate runs would serve: top_k=1).
    Returns (summary dict at `threshold`, sweep DataFrame or None)."""
    import tempfile

    import gptcache.utils
    import gptcache.utils.dependency_control
    import numpy as np
    from tqdm.auto import tqdm

    gptcache.utils.prompt_install = _no_pip
    gptcache.utils.dependency_control.prompt_install = _no_pip
    from gptcache import Cache, Config
    from gptcache.adapter.api import get, put
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt

    pairs_df = pairs_df.reset_index(drop=True)
    entries = list(dict.fromkeys(pairs_df["text_a"].str.strip()))
    queries = list(pairs_df["text_b"].str.strip())
    store = EmbeddingStore.get(embedder)
    store.encode(entries + queries, progress=progress)
    model = load_model(embedder)
    real = {"on": False}

    def embedding_func(data, **_):
        if real["on"]:  # the latency sample embeds for real, as a live cache would
            return model.encode([data], normalize_embeddings=True, convert_to_numpy=True)[0].astype(np.float32)
        return store.encode([data])[0]

    rec = _recording_evaluation()
    with tempfile.TemporaryDirectory(prefix="llmarch-gptcache-") as d:
        dm = get_data_manager(CacheBase("sqlite", sql_url=f"sqlite:///{d}/cache.db"),
                              VectorBase("faiss", dimension=store.encode(entries[:1]).shape[1],
                                         index_path=f"{d}/faiss.index", top_k=1),
                              max_size=len(entries) + 10)
        c = Cache()
        c.init(pre_embedding_func=get_prompt, embedding_func=embedding_func, data_manager=dm,
               similarity_evaluation=rec, config=Config(similarity_threshold=0.0))
        for i, e in enumerate(tqdm(entries, desc="gptcache put", disable=not progress, mininterval=2)):
            put(e, str(i), cache_obj=c)
        best, served_any = np.full(len(queries), -1.0), [None] * len(queries)
        for i, q in enumerate(tqdm(queries, desc="gptcache get", disable=not progress, mininterval=2)):
            rec.best = -1.0
            a = get(q, cache_obj=c)
            best[i] = rec.best
            served_any[i] = entries[int(a)] if a is not None else None
        rng = np.random.default_rng(seed)
        lat = []
        c.config.similarity_threshold = threshold
        real["on"] = True
        for i in rng.choice(len(queries), size=min(latency_sample, len(queries)), replace=False):
            t0 = time.perf_counter()
            get(queries[i], cache_obj=c)
            lat.append((time.perf_counter() - t0) * 1e3)
        real["on"] = False
        dm.close()
        c.data_manager = type("Closed", (), {"close": lambda self: None})()  # its atexit hook would flush into the deleted folder
    return _summary(pairs_df, served_any, best, lat, threshold, thresholds, len(entries))


def _recording_evaluation():
    """GPTCache's SearchDistanceEvaluation that also keeps the best score of the current query."""
    from gptcache.similarity_evaluation import SearchDistanceEvaluation, SimilarityEvaluation

    class Recording(SimilarityEvaluation):
        def __init__(self):
            self.inner = SearchDistanceEvaluation()
            self.best = -1.0

        def evaluation(self, src_dict, cache_dict, **kw):
            s = self.inner.evaluation(src_dict, cache_dict, **kw)
            self.best = max(self.best, s)
            return s

        def range(self):
            return self.inner.range()

    return Recording()


def _summary(pairs_df, served_any, best, lat, threshold: float, thresholds, n_entries: int):
    """(summary at `threshold`, sweep over `thresholds` or None) from each query's best score."""
    import pandas as pd

    from llmarch_lab.common import stats

    pos, neg = relations(pairs_df)

    def at(t):
        served = [s if b >= 4.0 * t else None for s, b in zip(served_any, best)]
        return score_served(pairs_df, served, pos, neg)

    summary = {**at(threshold), "similarity_threshold": threshold, "cosine_equivalent": 2 * threshold - 1,
               **stats.percentiles(lat, "latency_ms"), "n_pairs": len(pairs_df), "n_entries": n_entries}
    sw = None
    if thresholds is not None:
        sw = pd.DataFrame([{"threshold": float(t), **at(t)} for t in thresholds])
    return summary, sw
