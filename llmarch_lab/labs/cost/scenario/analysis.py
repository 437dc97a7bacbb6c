"""The study's tables: what was measured, each lever's effect alone, the prompt style chosen on dev.

    from llmarch_lab.labs.cost.scenario import analysis, measure
    got = analysis.load(measure.study(), items)       # answers and machine time of each complete config
    levers = analysis.lever_table(got, items)         # per config and task: accuracy vs base (paired CI), s/request
    style, rows = analysis.choose_style(got, max_rel_loss_pct=2)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from llmarch_lab.common import stats
from llmarch_lab.labs.cost import outcomes
from llmarch_lab.labs.cost.scenario import measure

BASE = "large-f16"


@dataclass
class Loaded:
    configs: dict[str, measure.Config]
    answers: dict[str, dict[str, float]] = field(default_factory=dict)     # key -> qid -> correct
    rows: dict[str, object] = field(default_factory=dict)                  # key -> outcome frame
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)     # key -> task -> s/request
    missing: dict[str, str] = field(default_factory=dict)                  # key -> why it is left out


def load(study, items) -> Loaded:
    """Each configuration's cached outcomes on `items` (the questions of its tasks; the subset
    configurations on their share) and its machine time. A configuration without every answer
    or without machine time is left out and says why (measure it with benchmarks/cost_scenario.py)."""
    import pandas as pd

    out = Loaded({c.key: c for c, _ in study})
    for cfg, share in study:
        key = measure.store_key(cfg)
        done = outcomes.cached(key)
        want = []
        for task in cfg.tasks:
            qids = list(items.loc[items["task"] == task, "qid"])
            want += qids[: max(1, round(len(qids) * share))] if qids else []
        have = [q for q in want if q in done]
        secs = measure.machine_seconds(key)
        if not want or len(have) < len(want):
            out.missing[cfg.key] = f"{len(have)} of {len(want)} answers measured"
        elif not all(t in secs for t in cfg.tasks):
            out.missing[cfg.key] = "no machine time recorded"
        else:
            out.rows[cfg.key] = pd.DataFrame([done[q] for q in want])
            out.answers[cfg.key] = {q: float(done[q]["correct"]) for q in want}
            out.seconds[cfg.key] = secs
    return out


def is_dev(qid: str) -> bool:
    """A fixed quarter of the questions (by a hash of the id) on which settings are chosen."""
    return int(hashlib.sha1(qid.encode()).hexdigest(), 16) % 4 == 0


def lever_table(got: Loaded, items, n_boot: int = 1000, seed: int = 0):
    """One row per (configuration, task): accuracy of the base (large F16) and of the configuration
    on the same questions, the difference with a paired 95% interval, relative change %, machine
    seconds per request and its ratio to the base at the base's concurrency, per-request latency
    p50 / p95 (answer blocks: taken while other work may share the machine), mean prompt and
    output tokens."""
    import numpy as np
    import pandas as pd

    if BASE not in got.answers:
        return pd.DataFrame()
    rows = []
    for key, df in got.rows.items():
        cfg = got.configs[key]
        for task, g in df.groupby("task"):
            qids = list(g["qid"])
            b = np.array([got.answers[BASE].get(q, np.nan) for q in qids])
            a = g["correct"].to_numpy(float)
            ok = np.isfinite(b)
            d = (stats.paired_bootstrap(stats.mean_difference, a[ok], b[ok], n_resamples=n_boot, seed=seed)
                 if ok.sum() >= 2 and key != BASE else {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0})
            base_acc = float(b[ok].mean()) if ok.any() else float("nan")
            secs = got.seconds[key][task]
            rows.append({"config": key, "task": task, "model": cfg.model, "precision": cfg.qtype,
                         "concurrency": cfg.concurrency, "compress": cfg.compress, "style": cfg.style,
                         "n": int(ok.sum()), "base_accuracy": base_acc, "accuracy": float(a[ok].mean()),
                         "diff": d["delta"], "diff_ci_low": d["ci_low"], "diff_ci_high": d["ci_high"],
                         "rel_change_pct": 100.0 * d["delta"] / base_acc if base_acc else float("nan"),
                         "s_per_request": secs, "cost_ratio": secs / got.seconds[BASE][task] if BASE in got.seconds else float("nan"),
                         "latency_p50_s": float(g["seconds"].quantile(0.5)), "latency_p95_s": float(g["seconds"].quantile(0.95)),
                         "prompt_tokens": float(g["prompt_tokens"].mean()), "output_tokens": float(g["output_tokens"].mean())})
    return pd.DataFrame(rows)


def choose_style(got: Loaded, max_rel_loss_pct: float) -> tuple[str, list[dict]]:
    """The GSM8K prompt style chosen on the dev questions: the cheapest measured style whose
    relative accuracy loss against the full prompt on dev is within the limit. Returns (style,
    one row per style with dev and held-out accuracy and cost)."""
    rows = []
    if BASE not in got.answers:
        return "full", rows
    for key, cfg in got.configs.items():
        if not key.startswith("large-f16") or cfg.compress != 1.0 or cfg.concurrency != 4 or key not in got.answers:
            continue
        if "gsm8k" not in got.seconds[key]:
            continue
        g = got.rows[key]
        g = g[g["task"] == "gsm8k"]
        for part, sel in (("dev", g["qid"].map(is_dev)), ("test", ~g["qid"].map(is_dev))):
            sub = g[sel]
            base = sum(got.answers[BASE][q] for q in sub["qid"]) / max(1, len(sub))
            acc = float(sub["correct"].mean()) if len(sub) else float("nan")
            rows.append({"style": cfg.style, "part": part, "n": len(sub), "accuracy": acc, "base_accuracy": base,
                         "rel_loss_pct": 100.0 * (base - acc) / base if base else float("nan"),
                         "s_per_request": got.seconds[key]["gsm8k"], "output_tokens": float(sub["output_tokens"].mean())})
    dev = [r for r in rows if r["part"] == "dev" and r["rel_loss_pct"] <= max_rel_loss_pct]
    best = min(dev, key=lambda r: r["s_per_request"]) if dev else {"style": "full"}
    return best["style"], rows
