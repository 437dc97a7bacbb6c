"""Every detector of a check on its outside set: scores, the threshold as shipped and the one the
dev sources choose, per-source and per-group tables.

    from llmarch_lab.labs.guardrails.outside import study
    out = study.injection(["rules", "minilm-lr", "union-lr"], nano_per_source=40)
    out["summary"], out["per_source"]            # DataFrames: one row per (detector, threshold rule, group / source)

Detectors trained only on other data (rules, minilm-lr, nanoguard, cascade, profanity-check,
hatesonar) score every row as they are. Those trained on the outside sources too (union-lr,
minilm-tox, tox-ensemble) are shown in two out-of-fold views at their shipped threshold: "<name>"
(new texts of the sources it was trained on) and "<name> (unseen source)" (leave-one-source-out).
nanoguard costs ~0.2 s a text on one thread, so it (and what contains it) scores `nano_per_source` texts of each source (seeded); the rows it did
not score are left out of that detector's tables, and `n` says how many it saw.
"""

from __future__ import annotations

from typing import Sequence

from llmarch_lab.labs.guardrails.outside import evaluate as ev

SLOW = ("nanoguard", "cascade", "ensemble")


def _subsample(df, per_source: int, seed: int = 0):
    keep = [i for _, g in df.groupby("source") for i in g.sample(min(len(g), per_source), random_state=seed).index]
    return df.loc[sorted(keep)]


def _tables(name: str, df, scores, own_t: float, budget: float):
    import pandas as pd

    dev_t = ev.choose_threshold(df, scores, budget)
    summ, per = [], []
    for rule, t in (("as shipped", own_t), (f"dev FPR<={budget:g}", dev_t)):
        s = ev.summary(df, scores, t).assign(detector=name, threshold_rule=rule)
        p = ev.per_source(df, scores, t).assign(detector=name, threshold_rule=rule, threshold=t)
        summ.append(s)
        per.append(p)
    return pd.concat(summ), pd.concat(per)


def _trained_views(name, det, df, budget, fit_args):
    """The two out-of-fold views of a detector trained on the outside set, at its shipped threshold
    (which the "seen" view's dev rows chose): tables for "<name>" and "<name> (unseen source)"."""
    fresh = det.refit_copy(*fit_args, budget=budget)
    out = []
    for view, label in (("seen", name), ("unseen", f"{name} (unseen source)")):
        out.append((label, fresh.oof[view], fresh.threshold))
    return out


def injection(detectors: Sequence[str] = ("rules", "minilm-lr", "union-lr"), nano_per_source: int = 40,
              budget: float = ev.BUDGET, progress: bool = True):
    """{"summary", "per_source", "scores"} for each injection detector on the outside set."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.labs.guardrails import injection as inj
    from llmarch_lab.labs.guardrails.injection.minilm_lr import training_file

    df = ev.load("injection")
    summ, per, scores = [], [], {}
    for name in detectors:
        rows = _subsample(df, nano_per_source).reset_index(drop=True) if name in SLOW else df
        det = inj.build(name)
        if name == "union-lr":
            base, _ = training_file()
            views = _trained_views(name, det, rows, budget, (base.text.tolist(), base.label.tolist(), rows))
        else:
            views = [(name, np.asarray(_scored(det, rows["text"].tolist(), name, progress)), det.threshold)]
        for label, s, own in views:
            scores[label] = pd.Series(s, index=rows["id"])
            a, b = _tables(label, rows, s, own, budget)
            summ.append(a)
            per.append(b)
    return {"summary": pd.concat(summ, ignore_index=True), "per_source": pd.concat(per, ignore_index=True),
            "scores": scores}


def toxicity(detectors: Sequence[str] = ("profanity-check", "hatesonar", "tox-ensemble"), budget: float = ev.BUDGET,
             progress: bool = True):
    """{"summary", "per_source", "scores"} for each toxicity detector on the outside toxicity set;
    the summary has one row per group for all texts, then for inputs and outputs apart."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.labs.guardrails import toxicity as tx

    df = ev.load("toxicity")
    side = np.where(df["kind"].str.startswith("input"), "input", "output")
    summ, per, scores = [], [], {}
    for name in detectors:
        det = tx.build(name)
        if getattr(det, "trainable", False):
            views = _trained_views(name, det, df, budget, (df,))
        else:
            views = [(name, np.asarray(_scored(det, df["text"].tolist(), name, progress)), det.threshold)]
        for label, s, own in views:
            scores[label] = pd.Series(s, index=df["id"])
            a, b = _tables(label, df, s, own, budget)
            t, rule = float(a.threshold.iloc[-1]), a.threshold_rule.iloc[-1]
            parts = [a.assign(side="all")]
            for sd in ("input", "output"):
                m = side == sd
                parts.append(ev.summary(df[m].reset_index(drop=True), s[m], t).assign(
                    detector=label, threshold_rule=rule, side=sd))
            summ.append(pd.concat(parts))
            per.append(b)
    return {"summary": pd.concat(summ, ignore_index=True), "per_source": pd.concat(per, ignore_index=True),
            "scores": scores}


def _scored(det, texts: list[str], name: str, progress: bool, chunk: int = 64):
    """det.score over chunks, with a progress bar."""
    import numpy as np

    steps = range(0, len(texts), chunk)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=name, unit="chunk", leave=False)
    return np.concatenate([det.score(texts[i:i + chunk]) for i in steps]) if texts else np.zeros(0)
