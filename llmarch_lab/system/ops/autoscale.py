"""Autoscaling, simulated: HPA policies (waiting requests per replica; requests in flight per
replica, the bundle's: the chart's engine-hpa.yaml on bundle_files.INFLIGHT, target 0.8 x slots)
over a diurnal trace, from a measured per-replica goodput and a measured engine start time;
against fixed sizing for the peak.

    res = autoscale.compare(Inputs(...), [fixed, hpa])   # {"table": DataFrame, "series": {name: DataFrame}}

The model (a fluid queue in steps of `step_s`): arrivals follow the trace, each ready replica
drains `goodput_rps`, the rest waits; a request's queueing delay is the queue divided by the
ready replicas' drain rate. The HPA, every `sync_s`: metric = waiting (or in-flight) requests per ready replica;
desired = ceil(current x metric / target) outside a 10% tolerance band; scale-down stabilized over
`down_window_s` (Kubernetes' defaults: 15 s sync, 0.1 tolerance, 300 s scale-down window, no
scale-up window). A new replica serves after engine start + pod start (scheduling, image, model
copy: stated, not measured here). What is not modelled: per-request latency beyond queueing
(the operating level's own TTFT is subtracted from the SLO by the caller), node provisioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmarch_lab import LabError


@dataclass
class Inputs:
    goodput_rps: float  # one replica, at the SLO (measured)
    engine_start_s: float  # measured (the serving run's latency.engine_start_s)
    mean_rps: float
    peak_rps: float
    usd_per_hour: float  # one replica's machine
    wait_slo_s: float  # the queueing delay a request may take: the TTFT SLO minus the operating TTFT
    pod_start_s: float = 30.0  # scheduling + image + model copy before the engine starts (stated)
    slots: int = 1  # requests one replica runs at once (llama-server --parallel): the inflight metric's scale
    hours: float = 24.0
    step_s: float = 5.0

    def check(self) -> None:
        for k in ("goodput_rps", "mean_rps", "peak_rps", "step_s", "hours"):
            if not getattr(self, k) > 0:
                raise LabError(f"autoscale: {k} must be > 0, got {getattr(self, k)!r}")
        if self.peak_rps < self.mean_rps:
            raise LabError(f"autoscale: peak_rps {self.peak_rps} is below mean_rps {self.mean_rps}")


@dataclass
class Policy:
    name: str
    min_replicas: int
    max_replicas: int
    target: float | None = 2.0  # per replica, of `metric`; None = fixed size (min_replicas)
    metric: str = "queue"  # "queue": waiting requests; "inflight": running + waiting (the bundle's HPA)
    sync_s: float = 15.0
    tolerance: float = 0.1
    down_window_s: float = 300.0


def trace(mean: float, peak: float, hours: float, step_s: float) -> np.ndarray:
    """Requests/s over `hours`: one daily peak (at 14:00), a raised cosine whose minimum is
    2 x mean - peak; when that would be negative, the cosine is raised to the power p that keeps
    the mean (bisection on p)."""
    t = np.arange(0.0, hours * 3600.0, step_s)
    base = (1.0 - np.cos(2.0 * np.pi * (t / 86400.0 - 14.0 / 24.0 + 0.5))) / 2.0  # 1 at 14:00
    lo = 2.0 * mean - peak
    if lo >= 0:
        return lo + (peak - lo) * base
    a, b = 1.0, 200.0
    for _ in range(60):
        p = (a + b) / 2.0
        a, b = (p, b) if peak * float(np.mean(base ** p)) > mean else (a, p)
    return peak * base ** ((a + b) / 2.0)


def simulate(inp: Inputs, pol: Policy, lam: np.ndarray):
    """One policy over the trace: a DataFrame per step (t_h, rps, ready, starting, queue, wait_s)."""
    import pandas as pd

    ready, pending, q = pol.min_replicas, [], 0.0
    desired_hist: list[tuple[float, int]] = []
    every = max(1, round(pol.sync_s / inp.step_s))
    delay = inp.engine_start_s + inp.pod_start_s
    rows = []
    for i, rate in enumerate(lam):
        t = i * inp.step_s
        ready += sum(1 for x in pending if x <= t)
        pending = [x for x in pending if x > t]
        q += rate * inp.step_s
        cap = ready * inp.goodput_rps * inp.step_s
        busy = min(q, cap) / cap if cap else 1.0  # share of the ready replicas' capacity in use
        q -= min(q, cap)
        wait = q / (ready * inp.goodput_rps) if ready else math.inf
        if pol.target is not None and i % every == 0:
            current = ready + len(pending)
            per = q / ready + (busy * inp.slots if pol.metric == "inflight" else 0.0) if ready else math.inf
            ratio = per / pol.target
            desired = current if abs(ratio - 1.0) <= pol.tolerance else math.ceil(max(ready, 1) * ratio)
            desired_hist = [(s, d) for s, d in desired_hist if s > t - pol.down_window_s] + [(t, desired)]
            desired = max(d for _, d in desired_hist) if desired < current else desired  # scale-down window
            desired = min(pol.max_replicas, max(pol.min_replicas, desired))
            if desired > current:
                pending += [t + delay] * (desired - current)
            elif desired < current:
                drop = current - desired
                keep = max(0, len(pending) - drop)
                drop -= len(pending) - keep
                pending, ready = pending[:keep], ready - drop
        rows.append((t / 3600.0, rate, ready, len(pending), q, wait))
    return pd.DataFrame(rows, columns=["t_h", "rps", "ready", "starting", "queue", "wait_s"])


def summary(inp: Inputs, pol: Policy, s) -> dict:
    arrivals = s.rps * inp.step_s
    late = arrivals[s.wait_s > inp.wait_slo_s].sum() / arrivals.sum()
    rep_h = float(((s.ready + s.starting) * inp.step_s).sum() / 3600.0)
    ups = int((s.starting.diff().fillna(0) > 0).sum())
    return {"policy": pol.name, "replicas min-max": f"{int(s.ready.min())}-{int((s.ready + s.starting).max())}",
            "replica_hours_per_day": round(rep_h * 24.0 / inp.hours, 1),
            "usd_per_month": round(rep_h * inp.usd_per_hour * (730.0 / inp.hours), 2),
            "late_share_pct": round(100.0 * float(late), 2), "max_wait_s": round(float(s.wait_s.max()), 1),
            "scale_ups": ups}


def compare(inp: Inputs, policies: list[Policy]) -> dict:
    import pandas as pd

    inp.check()
    lam = trace(inp.mean_rps, inp.peak_rps, inp.hours, inp.step_s)
    series = {p.name: simulate(inp, p, lam) for p in policies}
    table = pd.DataFrame([summary(inp, p, series[p.name]) for p in policies])
    return {"table": table, "series": series}


def plot(res: dict, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    first = next(iter(res["series"].values()))
    ax2 = ax.twinx()
    ax2.plot(first.t_h, first.rps, color="0.7", lw=1, label="load (req/s)")
    ax2.set_ylabel("req/s")
    for name, s in res["series"].items():
        ax.step(s.t_h, s.ready + s.starting, where="post", label=name)
    ax.set_xlabel("hour of day")
    ax.set_ylabel("replicas (ready + starting)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
