"""The scenario's plan: every lever's cost and quality per request on one trace, alone and combined.

    from llmarch_lab.labs.cost.scenario import plan
    m = plan.Measured(trace, answers, seconds)           # the configurations' answers and machine time
    row = plan.evaluate(m, plan.Plan(precision="Q8_0", cache=True, online_concurrency=4))
    table = plan.table(m, plan.candidates(m))           # point estimates; intervals for the front

A request's cost is machine-seconds (scenario.measure: each configuration's measured time per
request at its concurrency, engine start excluded); prices turn seconds into dollars later and do
not change any ratio. The baseline is the large model at F16 (the packaged Q4_K_M dequantized),
one request at a time, full prompts, no cache, no routing.

Levers and how a request is priced and scored under a plan:
- precision: the large model's GGUF type; its answers are that configuration's own.
- compress: PubMedQA abstracts compressed ~2x/4x (compress.py); its answers are that
  configuration's own; the compressor's own time per request is added.
- style_gsm8k: GSM8K's prompt style (outcomes.STYLES), chosen on the dev questions.
- online_concurrency: 1 (baseline) or the measured batched level; the machine time per request
  is the large-F16 configuration's at that level, as a ratio applied to every model (the small
  model's ratio is assumed equal: stated).
- offline_share: that share of model calls runs in offline batches at the highest measured level.
- route: a router threshold (out-of-fold scores): below it the small model answers.
- cache: the semantic cache's outcome on the trace (workload.with_cache): a correct hit costs a
  lookup and serves the source question's answer under the same plan; a wrong hit scores 0.
When a plan sets two answer-changing levers of the large model (precision, compress, style) whose
combination was not measured, its per-question answer is correct only if every one of the single-
lever configurations answered it correctly (the worse of them) and its cost ratios multiply; the
row says "composed". Quality is mean correctness over requests; loss and saving come with a
paired bootstrap over requests (common.stats).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field, replace

from llmarch_lab import LabError
from llmarch_lab.common import stats
from llmarch_lab.labs.cost.plan import rel_loss_metric, saving_metric

BASE_KEY = "large-f16"


@dataclass(frozen=True)
class Plan:
    precision: str = "F16"
    compress: float = 1.0
    style_gsm8k: str = "full"
    online_concurrency: int = 1
    offline_share: float = 0.0
    route: float | None = None
    cache: bool = False

    def levers(self) -> list[str]:
        out = []
        if self.precision != "F16":
            out.append(f"quantize {self.precision}")
        if self.online_concurrency != 1:
            out.append(f"batch x{self.online_concurrency}")
        if self.offline_share:
            out.append(f"offline {self.offline_share:.0%}")
        if self.compress != 1.0:
            out.append(f"compress {self.compress:g}x")
        if self.style_gsm8k != "full":
            out.append(f"prompt {self.style_gsm8k}")
        if self.route is not None:
            out.append(f"route t={self.route:.3g}")
        if self.cache:
            out.append("cache")
        return out

    def name(self) -> str:
        return " + ".join(self.levers()) or "baseline"


@dataclass
class Measured:
    """What the plan reads: trace (one row per request: request_id, qid, task, cache_outcome,
    cache_source_id, router_score), answers {config key: {qid: correct}}, seconds {config key:
    {task: machine-seconds per request}}, and the per-request overheads in seconds."""

    trace: object
    answers: dict[str, dict[str, float]]
    seconds: dict[str, dict[str, float]]
    compress_s: dict[float, float] = field(default_factory=dict)
    lookup_s: float = 0.0
    online_key: dict[int, str] = field(default_factory=lambda: {1: "large-f16-c1", 4: BASE_KEY})
    offline_key: str = "large-f16-c8"
    small_key: str = "small-q4km"

    def has(self, key: str) -> bool:
        return key in self.answers and key in self.seconds


def large_keys(p: Plan) -> list[str]:
    """The single-lever configurations whose answers make up the large model's under `p`."""
    keys = []
    if p.precision != "F16":
        keys.append(f"large-{p.precision.lower()}")
    if p.compress != 1.0:
        keys.append(f"large-f16-cc{p.compress:g}")
    if p.style_gsm8k != "full":
        keys.append(f"large-f16-{p.style_gsm8k}")
    return keys or [BASE_KEY]


def _large(m: Measured, p: Plan, qid: str, task: str) -> tuple[float, float]:
    """(correct, machine-seconds at the base concurrency) of the large model on one question."""
    keys = [k for k in large_keys(p) if task in m.seconds.get(k, {})] or [BASE_KEY]
    base = m.seconds[BASE_KEY][task]
    secs = base
    correct = 1.0
    for k in keys:
        if qid not in m.answers[k]:
            raise LabError(f"plan {p.name()}: configuration {k} has no answer for {qid}; measure it "
                           "(benchmarks/cost_scenario.py) or use the sample every configuration has")
        correct = min(correct, m.answers[k][qid])
        secs *= m.seconds[k][task] / base
    if p.compress != 1.0 and task == "pubmedqa":
        secs += m.compress_s.get(p.compress, 0.0)
    return correct, secs


def _batch_factor(m: Measured, p: Plan, task: str) -> float:
    """Machine time per request relative to the base configuration's level."""
    if p.online_concurrency not in m.online_key:
        raise LabError(f"online_concurrency {p.online_concurrency}: measured levels are {sorted(m.online_key)}")
    base = m.seconds[BASE_KEY][task]
    online = m.seconds[m.online_key[p.online_concurrency]][task] / base
    if not p.offline_share:
        return online
    offline = m.seconds[m.offline_key][task] / base
    return (1.0 - p.offline_share) * online + p.offline_share * offline


def evaluate(m: Measured, p: Plan):
    """(cost seconds per request, correct per request, served_by per request) as numpy arrays."""
    import numpy as np

    tr = m.trace
    n = len(tr)
    cost, quality, served = np.zeros(n), np.zeros(n), np.empty(n, dtype=object)
    pos = {rid: i for i, rid in enumerate(tr["request_id"])}
    for i, r in enumerate(tr.itertuples(index=False)):
        hit = p.cache and r.cache_outcome != "miss"
        if hit:
            cost[i] = m.lookup_s
            src = pos.get(r.cache_source_id)
            quality[i] = quality[src] if (r.cache_outcome == "correct_hit" and src is not None) else 0.0
            served[i] = "cache"
            continue
        if p.route is not None and r.router_score < p.route:
            quality[i] = m.answers[m.small_key][r.qid]
            secs = m.seconds[m.small_key][r.task]
            served[i] = "small"
        else:
            quality[i], secs = _large(m, p, r.qid, r.task)
            served[i] = "large"
        cost[i] = secs * _batch_factor(m, p, r.task) + (m.lookup_s if p.cache else 0.0)
    return cost, quality, served


def _interval(metric, a, b, n_resamples: int, seed: int) -> tuple[float, float, float]:
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.array_equal(a, b):
        v = float(metric(a, b))
        return v, v, v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning on near-constant resamples
        d = stats.paired_bootstrap(metric, a, b, n_resamples=n_resamples, seed=seed)
    return d["delta"], d["ci_low"], d["ci_high"]


def row(m: Measured, p: Plan, base=None, n_resamples: int = 0, seed: int = 0) -> dict:
    """One plan's row: saving %, relative loss % (with 95% intervals when n_resamples > 0),
    shares served by each path, and whether its answers are composed."""
    base = base or evaluate(m, Plan())
    cost, q, served = evaluate(m, p)
    out = {"plan": p.name(), "n_levers": len(p.levers()), "spec": p,
           "composed": len([k for k in large_keys(p) if k != BASE_KEY]) > 1,
           "cost_s_per_request": float(cost.mean()), "quality": float(q.mean()),
           "share_large": float((served == "large").mean()), "share_small": float((served == "small").mean()),
           "share_cache": float((served == "cache").mean())}
    if n_resamples:
        out["saving_pct"], out["saving_ci_low"], out["saving_ci_high"] = _interval(saving_metric, base[0], cost, n_resamples, seed)
        out["rel_loss_pct"], out["loss_ci_low"], out["loss_ci_high"] = _interval(rel_loss_metric, base[1], q, n_resamples, seed)
    else:
        out["saving_pct"] = float(saving_metric(base[0], cost))
        out["rel_loss_pct"] = float(rel_loss_metric(base[1], q))
    return out


def candidates(m: Measured, route_thresholds=(), offline_shares=(0.0,), styles=("full",)) -> list[Plan]:
    """Every combination of the measured levers' settings."""
    precisions = ["F16"] + [k.removeprefix("large-").upper() for k in m.answers
                            if k.startswith("large-q") and m.has(k)]
    compress = [1.0] + sorted({float(k.removeprefix("large-f16-cc")) for k in m.answers
                               if k.startswith("large-f16-cc") and m.has(k)})
    levels = [c for c, k in m.online_key.items() if m.has(k)]
    shares = [s for s in offline_shares if s == 0.0 or m.has(m.offline_key)]
    routes = [None, *route_thresholds] if m.has(m.small_key) else [None]
    return [Plan(*combo) for combo in itertools.product(precisions, compress, styles, levels, shares, routes,
                                                        (False, True))]


def table(m: Measured, plans, n_resamples: int = 1000, seed: int = 0):
    """One row per plan (point estimates); the Pareto front's rows (cost vs quality) and every
    plan of at most one lever get bootstrap intervals."""
    import pandas as pd

    base = evaluate(m, Plan())
    rows = [row(m, p, base) for p in plans]
    df = pd.DataFrame(rows)
    front = set(stats.pareto_front(df, {"cost_s_per_request": "lower", "quality": "higher"}, tol=0.0))
    rows = [row(m, r["spec"], base, n_resamples, seed) if (i in front or r["n_levers"] <= 1) else r
            for i, r in enumerate(rows)]
    df = pd.DataFrame(rows)
    df["pareto"] = df.index.isin(front)
    return df


def recommend(rows, target_saving_pct: float = 50.0, max_rel_loss_pct: float = 2.0) -> dict:
    """The cheapest plan whose loss interval's upper bound is within the limit (the point estimate
    when no interval was computed, and it says so); met = it also saves the target."""
    ok = rows[rows["loss_ci_high"].fillna(float("inf")) <= max_rel_loss_pct] if "loss_ci_high" in rows else rows[:0]
    basis = "upper bound of the 95% interval"
    if ok.empty:
        ok = rows[rows["rel_loss_pct"] <= max_rel_loss_pct]
        basis = "point estimate (no plan's upper bound is within the limit)"
    best = ok.sort_values("saving_pct", ascending=False).iloc[0]
    return {"plan": best["plan"], "spec": best["spec"], "saving_pct": float(best["saving_pct"]),
            "rel_loss_pct": float(best["rel_loss_pct"]), "basis": basis,
            "met": bool(best["saving_pct"] >= target_saving_pct), "row": best}


def waterfall(m: Measured, p: Plan, usd_per_second: float):
    """From the baseline to `p`, one lever switched on per step in a fixed order (precision,
    batching, offline, compression, prompt, routing, cache), in plan_plots.waterfall_plot's
    columns: lever, cost_usd (the trace's), saving_pct, step_saving_pct, rel_loss_pct."""
    import pandas as pd

    base_cost, base_q, _ = evaluate(m, Plan())
    total = float(base_cost.sum())
    rows = [{"lever": "baseline", "cost_usd": total * usd_per_second, "saving_pct": 0.0, "step_saving_pct": 0.0,
             "rel_loss_pct": 0.0}]
    cur, prev = Plan(), total
    for name in ("precision", "online_concurrency", "offline_share", "compress", "style_gsm8k", "route", "cache"):
        if getattr(p, name) == getattr(Plan(), name):
            continue
        cur = replace(cur, **{name: getattr(p, name)})
        cost, q, _ = evaluate(m, cur)
        c = float(cost.sum())
        rows.append({"lever": replace(Plan(), **{name: getattr(p, name)}).name(), "cost_usd": c * usd_per_second,
                     "saving_pct": (1 - c / total) * 100, "step_saving_pct": (prev - c) / total * 100,
                     "rel_loss_pct": float((base_q.mean() - q.mean()) / base_q.mean() * 100)})
        prev = c
    return pd.DataFrame(rows)
