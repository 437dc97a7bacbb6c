"""Load balancing, failover and model fallback through LiteLLM's Router (the proxy's
router_settings) over llama-server replicas on loopback, driven by the serving lab's load
generator (llm/load.py, closed loop).

    out = balance.run(BalanceConfig(), log_dir)   # {"table": DataFrame, one row per scenario}

Scenarios, all at the same load (`concurrency` requests in flight, `requests` in all) and the same
total CPU (`threads` split over the replicas) and slots:
  1 replica                       one llama-server, all threads and slots: the baseline
  R replicas, <strategy>          R llama-servers behind the proxy, one row per routing strategy
  failover (R replicas)           simple-shuffle; one replica killed (SIGKILL) after `kill_after_s`:
                                  failed requests, time from the kill to the last failure, p99
  fallback (primary down)         the primary model's only deployment is down from the start;
                                  LiteLLM `fallbacks` sends its requests to the second model
Everything started is stopped on every exit path.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, registry
from llmarch_lab.llm import litellm_proxy as lp
from llmarch_lab.system.ops import traffic

STRATEGIES = ("simple-shuffle", "least-busy", "latency-based-routing")


@dataclass
class BalanceConfig:
    model: str = "smollm2-135m-instruct"
    fallback_model: str = "qwen2.5-coder-0.5b-instruct"  # make model-qwen-0.5b
    replicas: int = 2
    threads: int = 2  # in all: each of R replicas gets threads // R
    slots: int = 2  # in all: each of R replicas gets slots // R (at least 1)
    concurrency: int = 4
    requests: int = 48
    max_tokens: int = 32
    prompt_words: int = 60
    strategies: tuple = STRATEGIES
    kill_after_s: float = 10.0
    num_retries: int = 2  # the proxy retries a failed request on another deployment
    allowed_fails: int = 1  # failures before a deployment is put in cooldown
    cooldown_s: float = 30.0
    fallback_requests: int = 12

    def check(self) -> None:
        if self.replicas < 2:
            raise LabError(f"balance: replicas {self.replicas}: needs at least 2")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad:
            raise LabError(f"balance: strategies {bad}: use {', '.join(STRATEGIES)}")


def _launch(model: str, n: int, threads: int, slots: int, log_dir: Path, tag: str) -> list:
    from llmarch_lab.llm import engines

    out = []
    try:
        for i in range(n):
            out.append(engines.launch("llama-server", model, log_path=log_dir / f"{tag}-{i}.log", max_model_len=1024,
                                      threads=max(1, threads // n), parallel=max(1, slots // n)))
    except BaseException:
        for e in out:
            e.stop()
        raise
    return out


class Router:
    """The LiteLLM proxy with one deployment per engine under `name` (plus fallbacks); a context manager."""

    def __init__(self, log_dir: Path, groups: dict, strategy: str, cfg: BalanceConfig, fallbacks: dict | None = None):
        self.log_dir, self.groups, self.strategy, self.cfg, self.fallbacks = log_dir, groups, strategy, cfg, fallbacks
        self.proc = None

    def config(self) -> dict:
        deps = [{"model_name": name, "litellm_params": {"model": f"openai/{e.model_name}", "api_base": e.base_url,
                                                        "api_key": "none"}}
                for name, engs in self.groups.items() for e in engs]
        rs = {"routing_strategy": self.strategy, "num_retries": self.cfg.num_retries,
              "allowed_fails": self.cfg.allowed_fails, "cooldown_time": self.cfg.cooldown_s, "retry_after": 0}
        if self.fallbacks:
            rs["fallbacks"] = [{k: v} for k, v in self.fallbacks.items()]
        return {"model_list": deps, "router_settings": rs,
                "litellm_settings": {"drop_params": True, "request_timeout": 120}}

    def __enter__(self):
        port = lp.free_ports(1)[0]
        self.key_env = lp.new_master_key(port)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        cfg = lp.write_config(self.log_dir / f"router-{self.strategy}.json", self.config())
        log = self.log_dir / f"router-{self.strategy}.log"
        try:
            self.proc = lp.start_proxy(cfg, port, log, lp.proxy_env(self.key_env, base=lp.child_env()))
            lp.wait_healthy("litellm", self.proc, lp.proxy_health_url(port), time.perf_counter() + 180, [log], "balance")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        lp.stop_all({"litellm": self.proc} if self.proc else {})
        lp.drop_master_key(self.key_env)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {os.environ.get(self.key_env, '')}"}


def _drive(base_url: str, model: str, key_env: str, cfg: BalanceConfig, on_start=None):
    """The closed-loop load through `base_url`; returns (records, wall s)."""
    from llmarch_lab.llm import load

    make = traffic.benign(cfg.prompt_words)
    reqs = (load.Request(i, [{"role": "user", "content": make()}], cfg.max_tokens) for i in range(10**9))
    target = load.Target(base_url, model, key_env, {}, 120.0)
    if on_start:
        on_start()
    return load.run_level(target, reqs, "concurrent", cfg.concurrency, cfg.requests, 600.0)


def _row(scenario: str, recs, wall: float, **extra) -> dict:
    m = registry.service("serving.summarize")(recs, wall, 1e9, 1e9, 0.0)
    return {"scenario": scenario, "requests": len(recs), "failed": sum(not r.ok for r in recs),
            "req_per_s": round(m.get("throughput.req_per_s", 0.0), 3),
            "output_tok_per_s": round(m.get("throughput.output_tok_per_s", 0.0), 1),
            "e2e_ms_p50": round(m.get("latency.e2e_ms_p50", float("nan")), 0),
            "e2e_ms_p99": round(m.get("latency.e2e_ms_p99", float("nan")), 0),
            "ttft_ms_p99": round(m.get("latency.ttft_ms_p99", float("nan")), 0), **extra}


def _kill(eng) -> None:
    try:
        os.killpg(eng.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _failover(router: Router, engs: list, cfg: BalanceConfig) -> dict:
    timer = threading.Timer(cfg.kill_after_s, _kill, args=(engs[0],))
    try:
        recs, wall = _drive(router.base_url, "primary", router.key_env, cfg, on_start=timer.start)
    finally:
        timer.cancel()
    failed = [r for r in recs if not r.ok]
    last = max((r.start_ms for r in failed), default=None)
    return _row(f"failover ({len(engs)} replicas, one killed at {cfg.kill_after_s:g} s)", recs, wall,
                recover_s=round(max(0.0, last / 1000.0 - cfg.kill_after_s), 1) if last is not None else 0.0,
                note=f"errors: {sorted({r.error[:60] for r in failed})}" if failed else
                "every request answered (the proxy retried on the live replica)")


def _fallback(router: Router, cfg: BalanceConfig) -> dict:
    """Requests for the primary model while its only deployment is down: which model answered."""
    import collections

    import httpx

    answered: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    lat = []
    with httpx.Client(timeout=120, headers=router.headers()) as c:
        for _ in range(cfg.fallback_requests):
            s = time.perf_counter()
            try:
                r = c.post(router.base_url + "/chat/completions", json={
                    "model": "primary", "max_tokens": 8, "messages": [{"role": "user", "content": traffic.benign()()}]})
                answered[r.json().get("model", "?") if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
            except (httpx.HTTPError, ValueError) as e:
                answered[type(e).__name__] += 1
            lat.append((time.perf_counter() - s) * 1000)
    lat.sort()
    return {"scenario": "fallback (primary down)", "requests": cfg.fallback_requests,
            "failed": sum(v for k, v in answered.items() if k != cfg.fallback_model),
            "req_per_s": round(cfg.fallback_requests / (time.perf_counter() - t0), 3),
            "e2e_ms_p50": round(lat[len(lat) // 2], 0), "e2e_ms_p99": round(lat[-1], 0),
            "note": "answered by: " + ", ".join(f"{k} x{v}" for k, v in answered.most_common())}


def run(cfg: BalanceConfig, log_dir, progress: bool = True) -> dict:
    import pandas as pd

    cfg.check()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    rows = []
    say("balance: 1 replica")
    one = _launch(cfg.model, 1, cfg.threads, cfg.slots, log_dir, "single")
    try:
        with Router(log_dir, {"primary": one}, "simple-shuffle", cfg) as r:
            rows.append(_row("1 replica (through the proxy)", *_drive(r.base_url, "primary", r.key_env, cfg)))
    finally:
        one[0].stop()
    engs = _launch(cfg.model, cfg.replicas, cfg.threads, cfg.slots, log_dir, "replica")
    try:
        for s in cfg.strategies:
            say(f"balance: {cfg.replicas} replicas, {s}")
            with Router(log_dir, {"primary": engs}, s, cfg) as r:
                rows.append(_row(f"{cfg.replicas} replicas, {s}", *_drive(r.base_url, "primary", r.key_env, cfg)))
        say("balance: failover")
        with Router(log_dir, {"primary": engs}, "simple-shuffle", cfg) as r:
            rows.append(_failover(r, engs, cfg))
    finally:
        for e in engs:
            e.stop()
    say("balance: fallback to the second model")
    down = _launch(cfg.model, 1, 1, 1, log_dir, "primary-down")
    fb = _launch(cfg.fallback_model, 1, cfg.threads, 1, log_dir, "fallback")
    try:
        _kill(down[0])
        with Router(log_dir, {"primary": down, "fallback": fb}, "simple-shuffle", cfg,
                    fallbacks={"primary": ["fallback"]}) as r:
            rows.append(_fallback(r, cfg))
    finally:
        for e in down + fb:
            e.stop()
    return {"table": pd.DataFrame(rows), "config": cfg}
