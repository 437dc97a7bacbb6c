"""Scoring detectors on the outside sets: leave-one-source-out training, thresholds for a benign-FPR
budget chosen on the dev sources, per-source tables on dev and test.

    from llmarch_lab.labs.guardrails.outside import evaluate as ev
    df = ev.load("injection")                            # rows of data/guard_outside/injection.jsonl (sha256-checked)
    t = ev.choose_threshold(df, scores, budget=0.04)     # dev sources only
    ev.per_source(df, scores, t), ev.summary(df, scores, t)

Protocol (what makes the test numbers honest):
- every outside source is one group; a trained model's score of a text comes from a model fitted
  WITHOUT any text of that text's source (leave-one-source-out, `loso_scores`), so each source is
  scored as an unseen source would be;
- the threshold is the lowest one at which every DEV benign source stays within the FPR budget
  (`choose_threshold`), never looking at a test source;
- test numbers are reported once, at that threshold.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from llmarch_lab import LabError, paths

CHECKS = ("injection", "toxicity")
BUDGET = 0.04  # per dev benign source: leaves room under the 5% goal for the test sources


def load(check: str):
    """The outside set of one check as a DataFrame (text, label, source, kind, group, id)."""
    import pandas as pd

    from llmarch_lab.assets import datasets

    if check not in CHECKS:
        raise LabError(f"outside set {check!r}: valid are {', '.join(CHECKS)}")
    path = datasets.verify(f"guard_outside/{check}.jsonl")
    df = pd.read_json(path, lines=True, dtype={"text": str})
    missing = {"text", "label", "source", "kind", "group", "id"} - set(df.columns)
    if missing:
        raise LabError(f"{path}: missing columns {sorted(missing)}")
    return df


def embed_cached(encoder, texts: list[str], tag: str = "") -> list:
    """MiniLM windows of `texts`, from one per-text store on disk under the lab cache (texts seen
    by any earlier call are not embedded again; new ones are added). `tag` is kept for callers."""
    import joblib

    path = paths.cache_dir() / "guardrails" / "emb-store-v1.joblib"
    store: dict = {}
    if path.exists():
        try:
            store = joblib.load(path)
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt, not fatal
            store = {}
    keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in store))
    if todo:
        first = {k: t for k, t in zip(keys, texts)}
        for k, w in zip(todo, encoder.embed_windows([first[k] for k in todo])):
            store[k] = w
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one temp file per writer
        joblib.dump(store, tmp)
        tmp.replace(path)
    return [store[k] for k in keys]


def design(wins: list, labels) -> tuple:
    """Training matrix: a benign text contributes every window (long benign prose must score low
    everywhere), an attack its first window (the rest of a long attack may be benign filler)."""
    import numpy as np

    X, y, owner = [], [], []
    for i, (w, lab) in enumerate(zip(wins, labels)):
        rows = w if int(lab) == 0 else w[:1]
        X.append(rows)
        y += [int(lab)] * len(rows)
        owner += [i] * len(rows)
    return np.concatenate(X), np.asarray(y), np.asarray(owner)


def fit_lr(X, y, C: float = 4.0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(X, y)


def max_window_scores(model, wins: list):
    import numpy as np

    flat = np.concatenate(wins)
    p = model.predict_proba(flat)[:, 1]
    out, at = np.zeros(len(wins)), 0
    for i, w in enumerate(wins):
        out[i] = p[at:at + len(w)].max()
        at += len(w)
    return out


def loso_scores(df, wins: list, base_wins: list, base_labels, fit: Callable = fit_lr):
    """Out-of-source scores for every outside row: for each source, a model fitted on the base
    set (deepset) plus every OTHER outside source scores that source's texts."""
    import numpy as np

    out = np.zeros(len(df))
    # a source split across dev and test (toxicity's two toxic sources) is two groups
    sources = (df["source"] + "/" + df["group"]).to_numpy()
    labels = df["label"].to_numpy()
    for s in sorted(set(sources)):
        keep = np.flatnonzero(sources != s)
        X, y, _ = design(list(base_wins) + [wins[i] for i in keep], list(base_labels) + labels[keep].tolist())
        model = fit(X, y)
        idx = np.flatnonzero(sources == s)
        out[idx] = max_window_scores(model, [wins[i] for i in idx])
    return out


def kfold_scores(df, wins: list, base_wins: list, base_labels, folds: int = 5, seed: int = 0, fit: Callable = fit_lr):
    """Out-of-fold scores with every source in training (folds stratified by source and label):
    how the shipped model, which saw every source, does on NEW texts of the sources it knows.
    `loso_scores` is the other question: a source (an attack family) it never saw."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(df))
    strata = (df["source"] + "/" + df["label"].astype(str)).to_numpy()
    labels = df["label"].to_numpy()
    # a stratum smaller than `folds` cannot be split evenly: StratifiedKFold warns and spreads it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(df)), strata))
    for tr, te in splits:
        X, y, _ = design(list(base_wins) + [wins[i] for i in tr], list(base_labels) + labels[tr].tolist())
        out[te] = max_window_scores(fit(X, y), [wins[i] for i in te])
    return out


def _rates(df, scores, t):
    import numpy as np

    pred = np.asarray(scores) >= t
    return df.assign(score=np.asarray(scores), flagged=pred)


def choose_threshold(df, scores, budget: float = BUDGET, min_t: float = 0.05) -> float:
    """The lowest threshold at which no DEV benign source has a false-positive rate above `budget`
    (so recall is as high as that allows)."""
    import numpy as np

    d = _rates(df, scores, 1.0)
    dev = d[(d.group == "dev") & (d.label == 0)]
    if dev.empty:
        raise LabError("choose_threshold: no dev benign rows")
    cands = np.unique(np.concatenate([[min_t], dev.score.to_numpy() + 1e-9]))
    for t in sorted(c for c in cands if c >= min_t):
        if dev.groupby("source").score.apply(lambda s, t=t: float((s >= t).mean())).max() <= budget + 1e-12:
            return float(t)
    return 1.0


def per_source(df, scores, t: float):
    """One row per source: group, label, kind, n, share flagged (recall for attack sources, FPR for
    benign ones) with its Wilson 95% interval."""
    from scipy.stats import binomtest

    d = _rates(df, scores, t)
    rows = []
    for (group, source, label, kind), g in d.groupby(["group", "source", "label", "kind"]):
        k, n = int(g.flagged.sum()), len(g)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        lo, hi = ci.low, ci.high
        rows.append({"group": group, "source": source, "label": int(label), "kind": kind, "n": n,
                     "metric": "recall" if label else "FPR", "value": k / n, "lo": lo, "hi": hi})
    import pandas as pd

    return pd.DataFrame(rows).sort_values(["group", "label", "source"]).reset_index(drop=True)


def summary(df, scores, t: float):
    """Per group: pooled P / R / F1, pooled benign FPR, the worst benign source's FPR and the
    weakest attack source's recall."""
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    d = _rates(df, scores, t)
    ps = per_source(df, scores, t)
    rows = []
    for group, g in d.groupby("group"):
        p, r, f1, _ = precision_recall_fscore_support(g.label, g.flagged, average="binary", zero_division=0)
        s = ps[ps.group == group]
        rows.append({"group": group, "n": len(g), "P": p, "R": r, "F1": f1,
                     "AUC": roc_auc_score(g.label, g.score) if g.label.nunique() == 2 else float("nan"),
                     "benign_FPR": float(g[g.label == 0].flagged.mean()),
                     "worst_source_FPR": float(s[s.label == 0].value.max()),
                     "min_source_recall": float(s[s.label == 1].value.min()) if (s.label == 1).any() else float("nan"),
                     "threshold": t})
    return pd.DataFrame(rows)
