"""The verifier: a calibrated classifier over FeatureMaker features of (query, candidate), and retrieval over a pairs file."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.common.files import atomic_path
from llmarch_lab.labs.cost.cache.embeddings import EmbeddingStore, embedder_tag, store_dir
from llmarch_lab.labs.cost.cache.features import FeatureMaker
from llmarch_lab.labs.cost.cache.index import FaissIndex, decide

# --------------------------------------------------------------------------------------------
# The verifier: a calibrated classifier over FeatureMaker's features of (query, candidate)
# --------------------------------------------------------------------------------------------

VERIFIER_VERSION = 1


class PairVerifier:
    """P(candidate is a duplicate of the query) for each of a query's top-k candidates."""

    def __init__(self, model, top_k: int, meta: dict):
        self.model = model
        self.top_k = top_k
        self.meta = meta
        self._fm = FeatureMaker()

    def predict_lists(self, queries, cand_texts, cand_sims, gate: float | None = None, progress: bool = False):
        """(n, k) probabilities, NaN where there is no candidate (or, with `gate`, where its cosine
        is under the gate: those are never served, so they are not scored)."""
        import numpy as np

        k = max((len(t) for t in cand_texts), default=0)
        probs = np.full((len(queries), k), np.nan)
        if gate is not None:
            cand_texts = [[t if (t is not None and s >= gate) else None for t, s in zip(ts, ss)]
                          for ts, ss in zip(cand_texts, cand_sims)]
            # rank features still see the full list: the similarities are unchanged
        x, where = self._fm.matrix(queries, cand_texts, cand_sims, progress=progress)
        if len(where):
            p = self.model.predict_proba(x)[:, 1]
            rows, cols = zip(*where)
            probs[list(rows), list(cols)] = p
        return probs

    def save(self, path: Path) -> Path:
        import joblib

        path = Path(path)
        with atomic_path(path) as tmp:
            joblib.dump({"version": VERIFIER_VERSION, "model": self.model, "top_k": self.top_k, "meta": self.meta}, tmp)
        return path


def load_verifier(path) -> PairVerifier:
    import joblib

    path = Path(path)
    if not path.is_file():
        raise LabError(f"verifier {path}: no such file")
    try:
        d = joblib.load(path)
    except Exception as e:  # a truncated or foreign file
        raise LabError(f"verifier {path}: not a saved verifier ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("version") != VERIFIER_VERSION:
        raise LabError(f"verifier {path}: saved by another version of this lab; delete it to retrain")
    return PairVerifier(d["model"], d["top_k"], d["meta"])


def relations(df):
    """(duplicate pairs, non-duplicate pairs) as frozensets of the two texts, from the labels."""
    pos, neg = set(), set()
    for a, b, y in zip(df["text_a"].str.strip(), df["text_b"].str.strip(), df["label"]):
        (pos if int(y) == 1 else neg).add(frozenset((a, b)))
    return pos, neg


def is_correct(query: str, key: str, pos: set, neg: set) -> bool:
    """A served entry is right when it is the query itself or a labelled duplicate of it."""
    q, k = query.strip(), key.strip()
    if q == k:
        return True
    pair = frozenset((q, k))
    return pair in pos and pair not in neg


def pair_groups(df):
    """Connected components of the text graph (an edge per pair), one id per row: pairs that share
    a question land in one group, so a group-aware split leaks no question across parts.
    Hand-written union-find: scipy's connected_components needs the same text->id mapping first
    and is no shorter."""
    import numpy as np

    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(df["text_a"].str.strip(), df["text_b"].str.strip()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    roots = [find(a) for a in df["text_a"].str.strip()]
    ids = {r: i for i, r in enumerate(dict.fromkeys(roots))}
    return np.array([ids[r] for r in roots])


@dataclass
class Retrieval:
    """Every text_b of a pairs frame searched against every distinct text_a, as a cache holds them."""

    entries: list
    queries: list
    sims: object  # (n, k)
    texts: list   # n lists of k entry texts (None where absent)
    exact: object  # (n,) bool: the query is itself a stored entry

    def served(self, pick):
        return [None if j < 0 else (self.queries[i] if self.exact[i] else self.texts[i][j]) for i, j in enumerate(pick)]


def retrieve(df, embedder: str = "minilm-l6", k: int = 3, progress: bool = False) -> Retrieval:
    import numpy as np

    entries = list(dict.fromkeys(df["text_a"].str.strip()))
    queries = list(df["text_b"].str.strip())
    store = EmbeddingStore.get(embedder)
    ev = store.encode(entries, progress=progress)
    qv = store.encode(queries, progress=progress)
    ix = FaissIndex(ev.shape[1])
    ix.add(np.arange(len(entries)), ev)
    sims, ids = ix.search(qv, k)
    texts = [[entries[x] if x >= 0 else None for x in row] for row in ids]
    eset = set(entries)
    exact = np.array([q in eset for q in queries])
    return Retrieval(entries, queries, sims, texts, exact)


def score_served(df, served, pos=None, neg=None) -> dict:
    """hit_rate = correct hits on duplicate pairs / duplicate pairs; wrong_hit_rate = wrong hits /
    all queries. A hit is correct when it served the query's own text or a text the file labels a
    duplicate of it (its own text_a above all); `_strict` versions count only the own text_a."""
    import numpy as np

    if pos is None:
        pos, neg = relations(df)
    y = df["label"].to_numpy().astype(int)
    own = df["text_a"].str.strip().to_numpy()
    q = df["text_b"].str.strip().to_numpy()
    hit = np.array([s is not None for s in served])
    ok = np.array([s is not None and is_correct(qq, s, pos, neg) for qq, s in zip(q, served)])
    strict = np.array([s is not None and yy == 1 and s == o for s, yy, o in zip(served, y, own)])
    n, nd = len(y), max(int((y == 1).sum()), 1)
    return {"hit_rate": float((ok & (y == 1)).sum() / nd), "wrong_hit_rate": float((hit & ~ok).sum() / max(n, 1)),
            "hit_rate_strict": float(strict.sum() / nd), "wrong_hit_rate_strict": float((hit & ~strict).sum() / max(n, 1)),
            "any_hit_rate": float(hit.mean()) if n else 0.0}


def _pick_exact(r: Retrieval, pick):
    """Exact repeats are always served (as SemanticCache.get does)."""
    import numpy as np

    return np.where(r.exact, 0, pick)


def curve(df, r: Retrieval, probs=None, thresholds=(0.9,), verifier_thresholds=None) -> "pd.DataFrame":  # noqa: F821
    """hit / wrong-hit rate of the serving rule over a grid, from one retrieval (no re-search)."""
    import pandas as pd

    pos, neg = relations(df)
    rows = []
    for t in thresholds:
        for v in (verifier_thresholds if probs is not None else [None]):
            pick = _pick_exact(r, decide(r.sims, probs, t, v))
            rows.append({"threshold": float(t), "verifier_threshold": v, **score_served(df, r.served(pick), pos, neg)})
    return pd.DataFrame(rows)


def verifier_path(pairs_df, embedder: str = "minilm-l6", top_k: int = 3, model: str = "hgb", seed: int = 0) -> Path:
    """Where train_verifier keeps the verifier of these pairs and settings (a hash of both)."""
    h = hashlib.sha1(f"v{VERIFIER_VERSION}|{embedder_tag(embedder)}|{top_k}|{model}|{seed}".encode())
    for a, b, y in zip(pairs_df["text_a"], pairs_df["text_b"], pairs_df["label"]):
        h.update(f"{a}\x00{b}\x00{int(y)}\x01".encode())
    return store_dir() / f"verifier-{h.hexdigest()[:16]}.joblib"


def train_verifier(pairs_df, embedder: str = "minilm-l6", top_k: int = 3, model: str = "hgb",
                   seed: int = 0, progress: bool = True, persist: bool = True) -> PairVerifier:
    """Train the pair verifier on the candidates a cache of these pairs' text_a would serve for
    their text_b (top_k nearest by cosine): label 1 when the file says the candidate is a duplicate
    (or it is the query itself), else 0. The non-duplicate pairs are exactly the hard negatives.
    Calibrated with isotonic regression on group-aware (connected-component) folds.
    Persisted in the cache dir keyed by a hash of the training pairs and settings."""
    import numpy as np

    if model not in ("hgb", "logreg"):
        raise LabError(f"train_verifier: model {model!r}, valid are hgb, logreg")
    path = verifier_path(pairs_df, embedder, top_k, model, seed)
    if persist and path.is_file():
        return load_verifier(path)
    t0 = time.perf_counter()
    r = retrieve(pairs_df, embedder, top_k, progress=progress)
    pos, neg = relations(pairs_df)
    fm = FeatureMaker()
    x, where = fm.matrix(r.queries, r.texts, r.sims, progress=progress)
    y = np.array([int(is_correct(r.queries[i], r.texts[i][j], pos, neg)) for i, j in where])
    groups = pair_groups(pairs_df)[[i for i, _ in where]]
    clf = _fit_calibrated(x, y, groups, model, seed)
    meta = {"n_pairs": int(len(pairs_df)), "n_train_rows": int(len(y)), "positives": int(y.sum()),
            "embedder": embedder, "top_k": top_k, "model": model, "train_s": round(time.perf_counter() - t0, 1)}
    v = PairVerifier(clf, top_k, meta)
    if persist:
        v.save(path)
    return v


def _fit_calibrated(x, y, groups, model: str, seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "hgb":
        base = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, max_leaf_nodes=31,
                                              l2_regularization=1.0, early_stopping=False, random_state=seed)
    else:
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    n_splits = 3 if len(set(groups)) >= 3 and y.sum() >= 3 and (1 - y).sum() >= 3 else 2
    splits = list(GroupKFold(n_splits=n_splits).split(x, y, groups))
    clf = CalibratedClassifierCV(base, method="isotonic", cv=splits, ensemble=False)
    return clf.fit(x, y)
