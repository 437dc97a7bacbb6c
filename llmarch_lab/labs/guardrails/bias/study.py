"""One bias study of one model: BBQ, CrowS-Pairs and StereoSet scored, metrics with 95% bootstrap
intervals, published anchors beside them, and the BBQ debiasing-prefix mitigation.

    rep = run_bias("smollm2", n_items=200, seed=0)     # BiasReport
    rep.rows                                            # set, metric, value, lo, hi, n, anchor
    rep.mitigation["test"]                              # no prefix vs the chosen prefix, deltas with CIs
    rep.metric_values()                                 # {"bbq.acc_ambig": (value, lo, hi), ...}

`n_items` is per set (0 = all): BBQ items from the annotated pool, CrowS-Pairs pairs, and StereoSet
items of each kind (intrasentence and intersentence separately). The same seed draws the same items
for every model. Per-item scores are cached (cache.py), so a rerun or a second model's run on the
same items only scores what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.bias import bbq_eval, data, metrics
from llmarch_lab.labs.guardrails.bias.anchors import anchor_text
from llmarch_lab.labs.guardrails.bias.cache import ScoreCache

MODELS = {"smollm2": "smollm2-135m-instruct", "qwen0.5b": "qwen2.5-coder-0.5b-instruct",
          "qwen1.5b": "qwen2.5-coder-1.5b-instruct"}
SETS = ("bbq", "crows", "stereoset")
CHUNK = 64  # items scored between cache writes and progress updates


@dataclass
class BiasReport:
    model: str
    n_items: int
    seed: int
    rows: list[dict] = field(default_factory=list)
    mitigation: dict | None = None
    items: dict = field(default_factory=dict)  # set -> per-item DataFrame
    seconds: float = 0.0

    def metric_values(self) -> dict[str, tuple[float, float, float]]:
        return {f"{r['set']}.{r['metric']}": (r["value"], r["lo"], r["hi"]) for r in self.rows}


def resolve_model(name: str) -> str:
    """Short name (smollm2, qwen0.5b, qwen1.5b) or a full model alias -> the alias models.py knows."""
    if name in MODELS:
        return MODELS[name]
    if name in MODELS.values():
        return name
    raise LabError(f"bias model {name!r}: use one of {', '.join(MODELS)} (or {', '.join(MODELS.values())})")


def _scored(cache, keys: list[str], make, score, progress: bool, desc: str) -> np.ndarray:
    """Score the uncached keys in chunks (make(i) -> the scoring input of key i, score(list) -> results)."""
    from tqdm.auto import tqdm

    todo = [i for i, k in enumerate(keys) if k not in cache]
    with tqdm(total=len(todo), desc=desc, unit="item", disable=not progress or not todo) as bar:
        for c in range(0, len(todo), CHUNK):
            idx = todo[c:c + CHUNK]
            for i, res in zip(idx, score([make(i) for i in idx])):
                cache.put(keys[i], res)
            bar.update(len(idx))
    return np.asarray([cache[k] for k in keys], dtype=float)


def score_crows(scorer, pairs: list[data.CrowsPair], cache, progress: bool = True) -> np.ndarray:
    """(n, 2, 2): (sum log-prob, tokens) of the more and the less stereotypical sentence."""
    def score(batch):
        flat = scorer.sentences([s for p in batch for s in p])
        return [[list(flat[2 * j]), list(flat[2 * j + 1])] for j in range(len(batch))]

    keys = [f"crows:{p.line}" for p in pairs]
    return _scored(cache, keys, lambda i: (pairs[i].more, pairs[i].less), score, progress, "CrowS-Pairs")


def score_stereoset(scorer, items: list[data.StereoItem], cache, progress: bool = True) -> np.ndarray:
    """(n, 3, 2): (sum log-prob, tokens) of the stereotype, anti-stereotype and unrelated option. An
    intrasentence option is the whole sentence; an intersentence option is scored after its context."""
    start = [scorer_start(scorer)]

    def make(i):
        it = items[i]
        opts = (it.stereotype, it.anti, it.unrelated)
        if it.kind == "intrasentence":
            return [(start, scorer.encode(o)) for o in opts]
        ctx = start + scorer.encode(it.context)
        return [(ctx, scorer.encode(" " + o)) for o in opts]

    def score(batch):
        flat = scorer.continuations([p for triple in batch for p in triple])
        return [[list(flat[3 * j + k]) for k in range(3)] for j in range(len(batch))]

    keys = [f"stereoset:{it.line}" for it in items]
    return _scored(cache, keys, make, score, progress, "StereoSet")


def scorer_start(scorer) -> int:
    from llmarch_lab.labs.guardrails.bias.scoring import doc_start_id

    return doc_start_id(scorer.tok)


def crows_rows(pairs, scores: np.ndarray, n_boot: int, seed: int) -> list[dict]:
    more, less = scores[:, 0, 0], scores[:, 1, 0]
    v = metrics.with_intervals(lambda idx: metrics.crows(more[idx], less[idx]), len(pairs), n_boot, seed)
    a, lo, hi = v["stereo_pref"]
    return [{"set": "crows", "metric": "stereo_pref", "value": a, "lo": lo, "hi": hi, "n": len(pairs),
             "anchor": anchor_text("crows.stereo_pref")}]


def stereoset_rows(items, scores: np.ndarray, n_boot: int, seed: int) -> list[dict]:
    """SS / LMS / ICAT overall and per kind; options compared by mean log-prob per token."""
    mean = scores[:, :, 0] / scores[:, :, 1]
    target = np.asarray([f"{it.kind}:{it.target}" for it in items])
    kinds = np.asarray([it.kind for it in items])
    rows = []
    for label, sel in (("stereoset", np.ones(len(items), bool)), ("stereoset_intra", kinds == "intrasentence"),
                       ("stereoset_inter", kinds == "intersentence")):
        if not sel.any():
            continue
        m, t = mean[sel], target[sel]
        v = metrics.with_intervals(lambda idx, m=m, t=t: metrics.stereoset(m[idx, 0], m[idx, 1], m[idx, 2], t[idx]),
                                   int(sel.sum()), n_boot, seed)
        rows += [{"set": label, "metric": k, "value": v[k][0], "lo": v[k][1], "hi": v[k][2], "n": int(sel.sum()),
                  "anchor": anchor_text(f"stereoset.{k}") if label == "stereoset" else ""} for k in ("ss", "lms", "icat")]
    return rows


def _stereoset_items(n_items: int, seed: int) -> list[data.StereoItem]:
    items = data.stereoset()
    intra = [it for it in items if it.kind == "intrasentence"]
    inter = [it for it in items if it.kind == "intersentence"]
    return data.sample(intra, n_items, seed) + data.sample(inter, n_items, seed)


def run_bias(model_name: str = "smollm2", n_items: int = 200, seed: int = 0, sets=SETS, mitigate: bool = True,
             n_boot: int = 1000, progress: bool = True, use_cache: bool = True, norm: str = "char",
             scorer=None) -> BiasReport:
    """The study of one model (see the module docstring); `scorer` reuses an already loaded model."""
    import pandas as pd

    from llmarch_lab.labs.guardrails.bias.scoring import Scorer

    bad = [s for s in sets if s not in SETS]
    if bad or norm not in bbq_eval.NORMS:
        raise LabError(f"run_bias: sets must be among {SETS} and norm among {bbq_eval.NORMS}, got {list(sets)}, {norm!r}")
    t0 = time.perf_counter()
    alias = resolve_model(model_name)
    scorer = scorer or Scorer.load(alias)
    rep = BiasReport(alias, n_items, seed)
    if "bbq" in sets:
        items = data.sample(data.bbq(), n_items, seed)
        cache = ScoreCache.open(alias, "bbq", use_cache)
        scores = bbq_eval.score_items(scorer, items, "none", cache, progress)
        pred = bbq_eval.predict(scores, items, norm)
        rep.rows += bbq_eval.bbq_rows(items, pred, n_boot, seed)
        rep.items["bbq"] = pd.DataFrame({"line": [it.line for it in items], "ambiguous": [it.ambiguous for it in items],
                                         "answer": [it.answer for it in items], "biased": [it.biased for it in items],
                                         "pred": pred, **{f"ll_{c}": scores[:, i, 0] for i, c in enumerate("abc")}})
        if mitigate:
            rep.mitigation = bbq_eval.mitigation(scorer, items, seed, cache, n_boot, norm, progress)
    if "crows" in sets:
        pairs = data.sample(data.crows_pairs(), n_items, seed)
        scores = score_crows(scorer, pairs, ScoreCache.open(alias, "crows", use_cache), progress)
        rep.rows += crows_rows(pairs, scores, n_boot, seed)
        rep.items["crows"] = pd.DataFrame({"line": [p.line for p in pairs], "bias_type": [p.bias_type for p in pairs],
                                           "ll_more": scores[:, 0, 0], "ll_less": scores[:, 1, 0]})
    if "stereoset" in sets:
        st = _stereoset_items(n_items, seed)
        scores = score_stereoset(scorer, st, ScoreCache.open(alias, "stereoset", use_cache), progress)
        rep.rows += stereoset_rows(st, scores, n_boot, seed)
        rep.items["stereoset"] = pd.DataFrame({"line": [it.line for it in st], "kind": [it.kind for it in st],
                                               "target": [it.target for it in st],
                                               **{f"mean_ll_{k}": scores[:, i, 0] / scores[:, i, 1]
                                                  for i, k in enumerate(("stereotype", "anti", "unrelated"))}})
    rep.seconds = time.perf_counter() - t0
    return rep
