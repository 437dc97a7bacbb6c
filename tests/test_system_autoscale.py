"""The autoscaling simulation (system/ops/autoscale.py): the trace keeps its mean and peak, fixed
sizing costs what it should, the in-flight HPA follows a slow daily ramp without backlog, and the
queue-length HPA (the bundle's) oscillates."""

from __future__ import annotations

import math

import pytest

from llmarch_lab.system.ops import autoscale as a


@pytest.mark.parametrize("mean,peak", [(2.0, 3.0), (2.0, 6.0), (0.2, 0.5)])
def test_trace_keeps_mean_and_peak(mean, peak):
    lam = a.trace(mean, peak, 24, 5)
    assert lam.max() == pytest.approx(peak, rel=1e-3)
    assert lam.mean() == pytest.approx(mean, rel=1e-3)
    assert lam.min() >= 0


def _inp(**kw):
    base = dict(goodput_rps=0.5, engine_start_s=1.0, mean_rps=2.0, peak_rps=6.0, usd_per_hour=0.1, wait_slo_s=3.0,
                slots=4)
    return a.Inputs(**{**base, **kw})


def test_fixed_inflight_and_queue_policies():
    inp = _inp()
    n = math.ceil(6.0 * 1.25 / 0.5)
    res = a.compare(inp, [a.Policy("fixed", n, n, None), a.Policy("queue", 1, 2 * n, 2.0),
                          a.Policy("inflight", 1, 2 * n, 0.8 * 4, metric="inflight")])
    t = res["table"].set_index("policy")
    assert t.loc["fixed", "replica_hours_per_day"] == pytest.approx(24 * n)
    assert t.loc["fixed", "usd_per_month"] == pytest.approx(n * 0.1 * 730, rel=1e-6)
    assert t.loc["fixed", "late_share_pct"] == 0
    # In flight: about load / (0.8 x goodput) replicas at the peak, no backlog on a slow ramp.
    s = res["series"]["inflight"]
    assert s.ready.max() == pytest.approx(6.0 / (0.8 * 0.5), abs=2)
    assert t.loc["inflight", "late_share_pct"] == 0 and t.loc["inflight", "usd_per_month"] < t.loc["fixed", "usd_per_month"]
    # Queue length only: no backlog, no replicas wanted; it scales down to the minimum and back up.
    assert t.loc["queue", "scale_ups"] > 10 * t.loc["inflight", "scale_ups"]
    assert t.loc["queue", "late_share_pct"] > 1


def test_scale_up_waits_for_the_start_time():
    # A step from 0.2 to 5 req/s: nothing new serves before engine + pod start.
    inp = _inp(mean_rps=0.5, peak_rps=0.5, hours=0.5, pod_start_s=60.0, engine_start_s=5.0)
    import numpy as np

    lam = np.r_[np.full(60, 0.2), np.full(300, 5.0)]
    s = a.simulate(inp, a.Policy("inflight", 1, 40, 3.2, metric="inflight"), lam)
    step = 60 * 5.0 / 3600.0
    first_up = s[s.starting > 0].t_h.min()
    assert first_up >= step - 1e-9
    more = s[s.ready > s.ready.iloc[59]].t_h.min()
    assert (more - first_up) * 3600 >= 65.0 - 5.0


def test_bad_inputs_name_the_field():
    with pytest.raises(Exception, match="goodput_rps"):
        a.compare(_inp(goodput_rps=0.0), [a.Policy("fixed", 1, 1, None)])
    with pytest.raises(Exception, match="peak_rps"):
        a.compare(_inp(peak_rps=1.0), [a.Policy("fixed", 1, 1, None)])
