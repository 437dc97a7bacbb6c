"""The plan: what each cost lever saves on the trace, alone and combined, at what quality change.

    from llmarch_lab.labs.cost import levers, plan, plan_plots
    prices = plan.plan_prices(throughput, usd_per_hour, small="smollm2", large="qwen-1.5b")
    table = plan.lever_table(trace, prices, route_thresholds=[0.5], cache_columns=["cache_outcome"],
                             quant_variants=[levers.QuantVariant("q4_k_m", speed_ratio=1.9, accuracy_ratio=0.97)])
    rec = plan.recommend(table, target_saving_pct=50, max_rel_loss_pct=2)
    metrics = plan.plan_metrics(table, rec)        # cost.plan_saving_pct, quality.plan_relative_loss_pct, ...
    plan_plots.pareto_plot(table, rec); plan_plots.waterfall_plot(plan.waterfall_steps(trace, rec["levers"], prices))

Baseline: every request answered by the large model, unquantized, online (concurrency-1 prices),
no cache. A trace row is one request: request_id, intent_id (the question it asks), task,
small_/large_prompt_tokens, small_/large_output_tokens, small_correct, large_correct (0/1, the
routing outcomes), router_score (for the route lever) and a cache outcome column (for the cache
lever: miss, correct_hit or wrong_hit from the cache replay; optional cache_source_id = the
request_id whose answer a hit serves).

Levers (levers.py: QuantVariant, Levers, route, cache, quantize, batch, combine) and their rules:
- route(t): a request whose router_score is above t goes to the large model, else to the small.
- cache(column): a correct hit serves the earlier answer at no model cost with that earlier
  answer's quality under the same plan (the cache_source_id request, else the first earlier miss
  with the same intent_id, else the model the plan routes it to); a wrong hit serves a wrong answer:
  quality 0 and no model cost. That is pessimistic: an answer to a near-duplicate question is
  sometimes right anyway. Lookups cost `cache_lookup_usd` per request (default 0).
- quantize(variant): the large model's $/token are divided by the quantization lab's measured
  speed ratio (quantized / unquantized tok/s) and its quality is the variant's own per-request
  correctness column if measured, else large_correct times the measured accuracy ratio (an
  expected value). A perplexity delta alone does not say how many answers change, so it is not
  turned into a quality change: such a variant is refused. No variant given: the lever is skipped
  and the table says so (attrs["notes"]).
- batch(): offline batch pricing, the $/token measured at a higher concurrency instead of 1.

Quality = mean per-request quality; relative quality loss % = (baseline - plan) / baseline * 100
(negative = a gain), with a paired-bootstrap interval over requests (common.stats).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Iterable, Mapping

from llmarch_lab import LabError
from llmarch_lab.common import stats
from llmarch_lab.labs.cost import costmodel
from llmarch_lab.labs.cost.levers import BASELINE, Levers, QuantVariant, batch, cache, combine, quantize, route

CACHE_OUTCOMES = ("miss", "correct_hit", "wrong_hit")
BASE_COLUMNS = ("request_id", "intent_id", "small_correct", "large_correct", "small_prompt_tokens",
                "small_output_tokens", "large_prompt_tokens", "large_output_tokens")


# ---------------------------------------------------------------------------------- prices

def plan_prices(throughput, usd_per_hour: float | Mapping[str, float], small: str, large: str,
                online_concurrency: int = 1, batch_concurrency: int | None = None,
                utilization: float = 1.0) -> dict:
    """{(role, mode): {usd_per_1m_input, usd_per_1m_output, concurrency, source}} for roles small
    and large, modes online (throughput at online_concurrency) and batch (at batch_concurrency,
    None = the highest measured). `usd_per_hour` is one price or {role: price}."""
    out = {}
    for role, model in (("small", small), ("large", large)):
        hourly = usd_per_hour[role] if isinstance(usd_per_hour, Mapping) else usd_per_hour
        out[(role, "online")] = costmodel.price_at(throughput, model, hourly, online_concurrency, utilization)
        out[(role, "batch")] = costmodel.price_at(throughput, model, hourly, batch_concurrency, utilization)
    return out


def _price(prices: Mapping, role: str, mode: str) -> Mapping[str, float]:
    key = (role, mode)
    if key not in prices:
        raise LabError(f"plan prices: no entry for {key} (have: {sorted(prices)}); see plan_prices")
    return prices[key]


# ---------------------------------------------------------------------------------- evaluation

def _check_trace(trace, levers: Levers) -> None:
    need = list(BASE_COLUMNS)
    if levers.route is not None:
        need.append("router_score")
    if levers.cache is not None:
        need.append(levers.cache)
    if levers.quantize is not None and levers.quantize.correct_column:
        need.append(levers.quantize.correct_column)
    missing = [c for c in need if c not in trace.columns]
    if missing:
        raise LabError(f"trace: missing column(s) {', '.join(missing)} (plan {levers.label()})")
    if len(trace) < 2:
        raise LabError(f"trace: needs at least 2 requests, got {len(trace)}")
    if levers.cache is not None:
        bad = sorted(set(map(str, trace[levers.cache].fillna("miss"))) - set(CACHE_OUTCOMES))
        if bad:
            raise LabError(f"trace column {levers.cache}: unknown cache outcome(s) {bad} (valid: {', '.join(CACHE_OUTCOMES)})")


def _cache_sources(trace, column: str):
    """Per request: the row position whose answer a correct hit serves (-1 when none)."""
    import numpy as np

    outcome = trace[column].fillna("miss").astype(str).to_numpy()
    src = np.full(len(trace), -1)
    pos = {rid: i for i, rid in enumerate(trace["request_id"])}
    first_miss: dict = {}
    has_source = "cache_source_id" in trace.columns
    for i, (o, intent) in enumerate(zip(outcome, trace["intent_id"])):
        if o == "correct_hit":
            s = pos.get(trace["cache_source_id"].iloc[i], -1) if has_source else first_miss.get(intent, -1)
            src[i] = s if s < i else -1  # a cached answer is an earlier one
        elif o == "miss":
            first_miss.setdefault(intent, i)
    return outcome, src


def evaluate_plan(trace, levers: Levers, prices: Mapping, cache_lookup_usd: float = 0.0) -> dict:
    """cost_usd (total), quality (mean), request_cost and request_quality (arrays, trace order),
    served_by (small, large, large-<variant>, cache, cache-wrong) and the plan's label."""
    import numpy as np

    _check_trace(trace, levers)
    mode = "batch" if levers.batch else "online"
    small_p, large_p = _price(prices, "small", mode), _price(prices, "large", mode)
    small_cost = costmodel.request_cost(trace["small_prompt_tokens"], trace["small_output_tokens"], small_p)
    large_q = trace["large_correct"].to_numpy(dtype=float)
    large_name = "large"
    if levers.quantize is not None:
        v = levers.quantize
        pre = v.prefill_speed_ratio or v.speed_ratio
        large_p = {"usd_per_1m_input": float(large_p["usd_per_1m_input"]) / pre,
                   "usd_per_1m_output": float(large_p["usd_per_1m_output"]) / v.speed_ratio}
        large_q = (trace[v.correct_column].to_numpy(dtype=float) if v.correct_column
                   else np.clip(large_q * v.accuracy_ratio, 0.0, 1.0))
        large_name = f"large-{v.name}"
    large_cost = costmodel.request_cost(trace["large_prompt_tokens"], trace["large_output_tokens"], large_p)

    if levers.route is None:
        to_large = np.ones(len(trace), dtype=bool)
    else:
        to_large = trace["router_score"].to_numpy(dtype=float) > levers.route
    cost = np.where(to_large, large_cost, small_cost)
    quality = np.where(to_large, large_q, trace["small_correct"].to_numpy(dtype=float))
    served = np.where(to_large, large_name, "small").astype(object)

    if levers.cache is not None:
        outcome, src = _cache_sources(trace, levers.cache)
        model_q = quality.copy()
        for i in np.flatnonzero(outcome == "correct_hit"):  # in trace order: a source is final first
            quality[i] = quality[src[i]] if src[i] >= 0 else model_q[i]
        hit = outcome != "miss"
        quality[outcome == "wrong_hit"] = 0.0
        cost = np.where(hit, 0.0, cost) + float(cache_lookup_usd)
        served[outcome == "correct_hit"] = "cache"
        served[outcome == "wrong_hit"] = "cache-wrong"
    return {"plan": levers.label(), "levers": levers, "cost_usd": float(cost.sum()), "quality": float(quality.mean()),
            "request_cost": cost, "request_quality": quality, "served_by": served}


def rel_loss_metric(base, plan):
    """paired_bootstrap metric: relative quality loss % of plan vs base (vectorised)."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        b = base.mean(-1)
        return (b - plan.mean(-1)) / b * 100.0


def saving_metric(base_cost, plan_cost):
    """paired_bootstrap metric: cost saving % of plan vs base over the resampled requests."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - plan_cost.sum(-1) / base_cost.sum(-1)) * 100.0


def _interval(metric, a, b, n_resamples: int, seed: int, confidence: float) -> dict:
    """stats.paired_bootstrap of metric(a, b); a plan whose every resample gives the same value
    (plan = baseline, or a constant per-request cost ratio) gets that value as its interval."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = b / a
    if np.array_equal(a, b) or (np.all(np.isfinite(ratio)) and np.ptp(ratio) == 0):
        v = float(metric(a, b))
        return {"delta": v, "ci_low": v, "ci_high": v, "clear": bool(v != 0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning on near-constant resamples
        return stats.paired_bootstrap(metric, a, b, n_resamples=n_resamples, seed=seed, confidence=confidence)


def lever_table(trace, prices: Mapping, *, route_thresholds: Iterable[float] = (), cache_columns: Iterable[str] = (),
                quant_variants: Iterable[QuantVariant] = (), batch: bool = True, cache_lookup_usd: float = 0.0,
                n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95):
    """Every combination of the levers' settings (each lever off or at one of its settings: with
    one setting each, the 2^k plans), one row each: plan, levers, n_levers, cost_usd, saving_pct
    (+ CI), quality, rel_loss_pct (+ CI, paired bootstrap over requests vs the baseline),
    share_large, share_cache, spec (the Levers). attrs["notes"] says which levers were skipped."""
    import numpy as np
    import pandas as pd

    routes = [None, *map(float, route_thresholds)]
    caches = [None, *cache_columns]
    quants = [None, *quant_variants]
    batches = [False, True] if batch else [False]
    notes = []
    if len(quants) == 1:
        notes.append("quantize lever skipped: no quantization-lab numbers (speed ratio, accuracy) given")
    if len(routes) == 1:
        notes.append("route lever skipped: no router thresholds given")
    if len(caches) == 1:
        notes.append("cache lever skipped: no cache outcome column given")
    if not batch:
        notes.append("batch lever skipped")
    base = evaluate_plan(trace, BASELINE, prices, 0.0)
    if base["quality"] <= 0:
        raise LabError("trace: the baseline (always large) answers nothing correctly; a relative loss is undefined")
    rows = []
    for r, c, q, b in itertools.product(routes, caches, quants, batches):
        spec = Levers(route=r, cache=c, quantize=q, batch=b)
        ev = evaluate_plan(trace, spec, prices, cache_lookup_usd if c is not None else 0.0)
        sv = _interval(saving_metric, base["request_cost"], ev["request_cost"], n_resamples, seed, confidence)
        ql = _interval(rel_loss_metric, base["request_quality"], ev["request_quality"], n_resamples, seed, confidence)
        served = ev["served_by"]
        rows.append({"plan": spec.label(), "levers": tuple(spec.names()), "n_levers": len(spec.names()),
                     "route_threshold": r, "cache": c, "quantize": q.name if q else None, "batch": b,
                     "cost_usd": ev["cost_usd"], "usd_per_1k_requests": ev["cost_usd"] / len(trace) * 1000,
                     "saving_pct": (1 - ev["cost_usd"] / base["cost_usd"]) * 100,
                     "saving_ci_low": sv["ci_low"], "saving_ci_high": sv["ci_high"],
                     "quality": ev["quality"], "rel_loss_pct": ql["delta"],
                     "rel_loss_ci_low": ql["ci_low"], "rel_loss_ci_high": ql["ci_high"], "loss_clear": ql["clear"],
                     "share_large": float(np.mean([str(s).startswith("large") for s in served])),
                     "share_cache": float(np.mean([str(s).startswith("cache") for s in served])),
                     "spec": spec})
    table = pd.DataFrame(rows)
    table.attrs["notes"] = notes
    table.attrs["baseline_cost_usd"] = base["cost_usd"]
    table.attrs["baseline_quality"] = base["quality"]
    return table


# ---------------------------------------------------------------------------------- recommendation

def recommend(table, target_saving_pct: float = 50.0, max_rel_loss_pct: float = 2.0, bound: str = "point") -> dict:
    """The plan to adopt. Rule: a plan meets the quality bound when its relative loss is at most
    max_rel_loss_pct (bound="point": the point estimate; bound="upper": the upper end of its
    bootstrap interval, the cautious reading); among those, the cheapest (highest saving; ties:
    lower loss, then fewer levers). It meets the target when that saving is >= target_saving_pct.
    When none does, the answer is the cheapest plan within the quality bound (the closest one;
    the baseline always qualifies), with met=False and the reason.

    Returns {met, plan, levers (Levers), saving_pct, rel_loss_pct, rel_loss_ci_high, reason, row}."""
    if bound not in ("point", "upper"):
        raise LabError(f"recommend: bound must be 'point' or 'upper', got {bound!r}")
    if table.empty:
        raise LabError("recommend: the lever table is empty")
    loss = table["rel_loss_pct"] if bound == "point" else table["rel_loss_ci_high"]
    ok = table[loss <= max_rel_loss_pct + 1e-12]
    if ok.empty:  # cannot happen with a baseline row; keep a clear answer anyway
        ok = table.loc[[table["rel_loss_pct"].idxmin()]]
    best = ok.sort_values(["saving_pct", "rel_loss_pct", "n_levers"], ascending=[False, True, True]).iloc[0]
    met = bool(best["saving_pct"] >= target_saving_pct)
    what = "loss" if bound == "point" else "loss upper bound"
    if met:
        reason = (f"{best['plan']}: saves {best['saving_pct']:.1f}% (target {target_saving_pct:g}%) at "
                  f"{best['rel_loss_pct']:.2f}% relative quality loss ({what} <= {max_rel_loss_pct:g}%)")
    else:
        reason = (f"no plan saves {target_saving_pct:g}% with {what} <= {max_rel_loss_pct:g}%; closest: "
                  f"{best['plan']} saves {best['saving_pct']:.1f}% at {best['rel_loss_pct']:.2f}% loss")
        cheaper = table[table["saving_pct"] >= target_saving_pct]
        if len(cheaper):
            c = cheaper.sort_values("rel_loss_pct").iloc[0]
            reason += f"; the least lossy plan reaching the saving is {c['plan']} at {c['rel_loss_pct']:.2f}% loss"
    return {"met": met, "plan": best["plan"], "levers": best["spec"], "saving_pct": float(best["saving_pct"]),
            "rel_loss_pct": float(best["rel_loss_pct"]), "rel_loss_ci_high": float(best["rel_loss_ci_high"]),
            "target_saving_pct": float(target_saving_pct), "max_rel_loss_pct": float(max_rel_loss_pct),
            "bound": bound, "reason": reason, "row": best.drop(labels=["spec"]).to_dict()}


def plan_metrics(table, rec: dict) -> dict[str, float]:
    """Metrics to log on the run: cost.plan_saving_pct and quality.plan_relative_loss_pct (the
    recommended plan), and per single lever cost.saving_pct_<lever> / quality.relative_loss_pct_<lever>
    (lever slugs: route_0_5, cache, quantize_q4_k_m, batch)."""
    out = {"cost.plan_saving_pct": float(rec["saving_pct"]),
           "quality.plan_relative_loss_pct": float(rec["rel_loss_pct"])}
    for row in table[table["n_levers"] == 1].itertuples():
        slug = row.spec.slug()
        out[f"cost.saving_pct_{slug}"] = float(row.saving_pct)
        out[f"quality.relative_loss_pct_{slug}"] = float(row.rel_loss_pct)
    return out


# ---------------------------------------------------------------------------------- waterfall

def _single(levers: Levers) -> list[Levers]:
    parts = []
    if levers.route is not None:
        parts.append(route(levers.route))
    if levers.cache is not None:
        parts.append(cache(True, levers.cache))
    if levers.quantize is not None:
        parts.append(quantize(levers.quantize))
    if levers.batch:
        parts.append(batch(True))
    return parts


def waterfall_steps(trace, levers: Levers, prices: Mapping, order: list[Levers] | None = None,
                    cache_lookup_usd: float = 0.0):
    """From the baseline to `levers`, one lever added per step. order=None: greedy, the lever that
    saves the most next. Columns: step, lever, plan, cost_usd, saving_pct (cumulative),
    step_saving_pct (percentage points of the baseline cost this step adds), quality, rel_loss_pct."""
    import pandas as pd

    base = evaluate_plan(trace, BASELINE, prices)
    remaining = list(order) if order is not None else _single(levers)
    current = BASELINE
    rows = [{"step": 0, "lever": "baseline", "plan": "baseline", "cost_usd": base["cost_usd"], "saving_pct": 0.0,
             "step_saving_pct": 0.0, "quality": base["quality"], "rel_loss_pct": 0.0}]
    prev = base["cost_usd"]

    def ev(lv):
        return evaluate_plan(trace, lv, prices, cache_lookup_usd if lv.cache is not None else 0.0)

    while remaining:
        if order is None:
            nxt = min(remaining, key=lambda lv: ev(combine(current, lv))["cost_usd"])
        else:
            nxt = remaining[0]
        remaining.remove(nxt)
        current = combine(current, nxt)
        e = ev(current)
        rows.append({"step": len(rows), "lever": nxt.label(), "plan": current.label(), "cost_usd": e["cost_usd"],
                     "saving_pct": (1 - e["cost_usd"] / base["cost_usd"]) * 100,
                     "step_saving_pct": (prev - e["cost_usd"]) / base["cost_usd"] * 100, "quality": e["quality"],
                     "rel_loss_pct": (base["quality"] - e["quality"]) / base["quality"] * 100})
        prev = e["cost_usd"]
    return pd.DataFrame(rows)
