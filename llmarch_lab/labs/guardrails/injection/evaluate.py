"""Building a detector by name, its cross-validation and the comparison table."""

from __future__ import annotations

from typing import Sequence

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.detectors import Detector, normalize
from llmarch_lab.labs.guardrails.injection.base import DETECTORS
from llmarch_lab.labs.guardrails.injection.cascade import CascadeDetector
from llmarch_lab.labs.guardrails.injection.encoder import MiniLMEncoder
from llmarch_lab.labs.guardrails.injection.ensemble import EnsembleDetector
from llmarch_lab.labs.guardrails.injection.minilm_lr import MiniLMLRDetector, load_or_train_minilm, training_file
from llmarch_lab.labs.guardrails.injection.nanoguard import NanoGuardDetector
from llmarch_lab.labs.guardrails.injection.patterns import RulesDetector
from llmarch_lab.labs.guardrails.injection.union import UnionLRDetector, load_or_train_union

# ============================================================================== factory + CV

def build(name: str, fit: bool = True, backend: str = "auto", max_escalate: float = 0.05) -> Detector:
    """A detector by name, ready to score: trained ones are fitted on the training file (cached)."""
    if name not in DETECTORS:
        raise LabError(f"unknown injection detector {name!r}: valid are {', '.join(DETECTORS)}")
    if name == "rules":
        return RulesDetector()
    if name == "nanoguard":
        return NanoGuardDetector()
    if name == "union-lr":
        return load_or_train_union(MiniLMEncoder(backend)) if fit else UnionLRDetector(MiniLMEncoder(backend))
    mid = load_or_train_minilm(MiniLMEncoder(backend)) if fit else MiniLMLRDetector(MiniLMEncoder(backend))
    if name == "minilm-lr":
        return mid
    df, _ = training_file()
    texts, y = df.text.tolist(), df.label.values
    if name == "cascade":
        det = CascadeDetector(mid=mid, max_escalate=max_escalate)
        if fit:
            det.fit(texts, y, last_scores=NanoGuardDetector(cache=True).score(texts))
        return det
    det = EnsembleDetector(members=("rules", "minilm-lr") if name == "ensemble-fast" else ("rules", "minilm-lr", "nanoguard"),
                           mid=mid)
    if fit:
        det.fit(texts, y, nano_scores=NanoGuardDetector(cache=True).score(texts) if det.nano is not None else None)
    return det


def _cv_name(name: str) -> None:
    if name not in DETECTORS:
        raise LabError(f"unknown injection detector {name!r}: valid are {', '.join(DETECTORS)}")
    if name == "union-lr":
        raise LabError("union-lr is trained on the outside sources too: it is scored on them out of fold "
                       "(part `outside`), not cross-validated on the training file alone")


def cross_validate(name: str, df, folds: int = 5, seed: int = 0, latency_n: int = 0, backend: str = "auto",
                   max_escalate: float = 0.05, encoder: MiniLMEncoder | None = None, inner_folds: int = 5,
                   repeats: int = 1) -> dict:
    """Out-of-fold metrics of a detector on `df` (text, label).

    Trained detectors (minilm-lr, cascade, ensemble*): stratified `folds`-fold CV; every fitted
    choice (C, threshold, band, stacker) is made on the training folds only, and each test fold is
    predicted with its own fold's threshold. Untrained ones (rules, nanoguard): scored on all of
    `df` as they come. Returns {name, cross_validated, metrics, oof (DataFrame text, label, score,
    pred, fold[, stage]), pr_curve, folds: [per-fold dicts]}. `inner_folds`: the folds inside each
    training split that choose C and the threshold (and feed the cascade / stacker). `latency_n` > 0 adds per-text
    latency percentiles of the detector fitted on all of `df`, on a stratified sample of texts."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from llmarch_lab.common import stats
    from llmarch_lab.labs.guardrails.detectors import binary_metrics, measure_latency, pr_curve

    _cv_name(name)
    texts = [normalize(t) for t in df["text"].tolist()]
    y = np.asarray(df["label"]).astype(int)
    if len(texts) < 2 * folds or np.bincount(y, minlength=2).min() < folds:
        raise LabError(f"cross_validate: {len(texts)} texts with {np.bincount(y, minlength=2).tolist()} per class "
                       f"are too few for {folds} folds")
    scores, preds = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    fold_id = np.zeros(len(y), dtype=int)
    stages = np.array([""] * len(y), dtype=object)
    per_fold, full = [], None
    needs_nano = name in ("cascade", "ensemble")
    nano = NanoGuardDetector(cache=True).score(texts) if needs_nano else None
    enc = encoder or MiniLMEncoder(backend)
    enc.memo_all = True  # every fold re-scores the same texts: embed each once
    if name in ("rules", "nanoguard"):
        full = RulesDetector() if name == "rules" else NanoGuardDetector()
        scores = full.score(texts) if name == "rules" else NanoGuardDetector(cache=True).score(texts)
        preds = scores >= full.threshold
        fold_id[:] = -1
    else:
        for k, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, y)):
            tr_t, te_t = [texts[i] for i in tr], [texts[i] for i in te]
            mid = MiniLMLRDetector(encoder=enc, seed=seed, inner_folds=inner_folds).fit(tr_t, y[tr])
            if name == "minilm-lr":
                det = mid
                s = det.score(te_t)
            elif name == "cascade":
                det = CascadeDetector(mid=mid, max_escalate=max_escalate, last=NanoGuardDetector(cache=True))
                det.fit(tr_t, y[tr], last_scores=nano[tr])
                s = det.score(te_t)
                stages[te] = det.last_stages
            else:
                det = EnsembleDetector(members=("rules", "minilm-lr") if name == "ensemble-fast" else ("rules", "minilm-lr", "nanoguard"),
                                       mid=mid, seed=seed, folds=inner_folds, nanoguard_cache=True)
                det.fit(tr_t, y[tr], nano_scores=nano[tr] if nano is not None else None)
                s = det.score(te_t)
            scores[te], preds[te], fold_id[te] = s, s >= det.threshold, k
            per_fold.append({"fold": k, "threshold": float(det.threshold), **getattr(det, "meta", {}),
                             **({"band": det.band} if name == "cascade" else {}),
                             **{f"fold_{m}": v for m, v in binary_metrics(y[te], s, s >= det.threshold).items()
                                if m in ("f1", "fpr", "roc_auc")}})
    metrics = binary_metrics(y, scores, preds)
    metrics["threshold_mean"] = float(np.mean([f["threshold"] for f in per_fold])) if per_fold else float(full.threshold)
    oof = pd.DataFrame({"text": texts, "label": y, "score": scores, "pred": preds.astype(int), "fold": fold_id})
    if name == "cascade":
        oof["stage"] = stages
        for st in ("rules", "minilm-lr", "nanoguard"):
            metrics[f"frac_{st.replace('-', '_')}"] = float((stages == st).mean())
    out = {"name": name, "cross_validated": name not in ("rules", "nanoguard"), "folds": per_fold,
           "metrics": metrics, "oof": oof, "pr_curve": pr_curve(y, scores)}
    if latency_n > 0:
        det = full if full is not None else build(name, backend=backend, max_escalate=max_escalate)
        sample = _stratified_sample(texts, y, latency_n, seed)
        lat = measure_latency(det, sample, repeats=repeats)
        out["latency_ms"] = lat
        metrics.update({k.removeprefix("x_"): v for k, v in stats.percentiles(lat, "x_latency_ms").items()})
        if name == "cascade":
            det.score(sample)  # which stage the timed texts reached (the timing loop scores one at a time)
            metrics["latency_frac_escalated"] = float(np.mean([s == "nanoguard" for s in det.last_stages]))
    return out


def _stratified_sample(texts, y, n: int, seed: int) -> list[str]:
    import numpy as np

    if n >= len(texts):
        return list(texts)
    rng = np.random.default_rng(seed)
    idx = []
    for c in (0, 1):
        members = np.flatnonzero(y == c)
        k = max(1, round(n * len(members) / len(y)))
        idx.extend(rng.choice(members, size=min(k, len(members)), replace=False).tolist())
    rng.shuffle(idx)
    return [texts[i] for i in idx[:n]]


# ============================================================================== table

def table(names: Sequence[str] = DETECTORS, folds: int = 5, seed: int = 0, latency_n: int = 100,
          max_escalate: float = 0.05, backends: Sequence[str] = ("auto",), repeats: int = 3):
    """One row per detector: P, R, F1, ROC-AUC, benign FPR, p50/p95 ms per text on one thread."""
    import pandas as pd

    df, sha = training_file()
    rows = []
    encs = {b: MiniLMEncoder(b) for b in backends}
    for name in names:
        for b in (backends if name != "rules" and name != "nanoguard" else backends[:1]):
            res = cross_validate(name, df, folds=folds, seed=seed, latency_n=latency_n, backend=b,
                                 max_escalate=max_escalate, encoder=encs[b], repeats=repeats)
            m = res["metrics"]
            rows.append({"detector": name + (f" [{encs[b].backend}]" if name not in ("rules", "nanoguard") else ""),
                         "numbers": f"{folds}-fold OOF" if res["cross_validated"] else "whole file",
                         "precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "roc_auc": m["roc_auc"],
                         "fpr": m["fpr"], "threshold": m["threshold_mean"],
                         "p50_ms": m.get("latency_ms_p50"), "p95_ms": m.get("latency_ms_p95"),
                         "escalated_cv": m.get("frac_nanoguard"), "escalated_timed": m.get("latency_frac_escalated")})
    return pd.DataFrame(rows), sha
