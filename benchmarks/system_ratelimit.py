"""Rate limits and abuse at the gateway (llmarch_lab/system/ops/ratelimit.py): per-key limits
under 3x overload, rpm and tpm limits, malformed and oversized bodies, a bounded fuzz; three
tables, logged to MLflow.

    .venv/bin/python benchmarks/system_ratelimit.py                       # ~4 min
    .venv/bin/python benchmarks/system_ratelimit.py --requests 30 --fuzz 30 --no-log

The stack is the bundle's: llama-server (SmolLM2-135M, 2 slots), the guard service and the
LiteLLM gateway with the keys file. Needs make engine-llama-server engine-litellm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=90, help="Requests per overload scenario.")
    ap.add_argument("--overload", type=float, default=3.0, help="Offered load, x the measured capacity.")
    ap.add_argument("--fuzz", type=int, default=300, help="Fuzzed request bodies.")
    ap.add_argument("--log-dir", default="", help="Engine, guard and gateway logs (default: a temporary folder).")
    ap.add_argument("--no-log", action="store_true", help="Do not log to MLflow.")
    a = ap.parse_args(argv)

    from llmarch_lab.system.ops import ratelimit

    cfg = ratelimit.RateLimitConfig(overload_requests=a.requests, overload=a.overload, fuzz_n=a.fuzz)
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="llmarch-ratelimit-")
    out = ratelimit.run(cfg, log_dir)
    lim, bodies, fuzz = out["limits"], out["bodies"], out["fuzz"]
    print(f"\nPer-key limits at the gateway: llama-server (SmolLM2-135M, {cfg.slots} slots), guard ({cfg.detector}), "
          f"LiteLLM; TTFT SLO {cfg.ttft_slo_ms:g} ms p99; {os.cpu_count()} cores; logs {log_dir}")
    print(lim.drop(columns=["codes"]).to_markdown(index=False, floatfmt=".4g"))
    print("\nMalformed and oversized bodies (one request each)")
    print(bodies.drop(columns=["answer"]).to_markdown(index=False))
    print(f"\nFuzz: {fuzz['bodies']} bodies in {fuzz['seconds']} s: {fuzz['codes']}; 5xx or dropped: {fuzz['5xx_or_dropped']}")
    for ex in fuzz["examples"]:
        print("  ", json.dumps(ex)[:200])
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        res = Result(tables={"limits": lim.astype({"codes": str}), "bodies": bodies})
        for r in lim.to_dict("records"):
            k = r["id"]
            res.add(f"throughput.ratelimit_{k}_goodput_req_per_s", float(r["goodput_req_per_s"]))
            if r["ttft_ms_p99"] is not None and r["ttft_ms_p99"] == r["ttft_ms_p99"]:
                res.add(f"latency.ratelimit_{k}_ttft_ms_p99", float(r["ttft_ms_p99"]))
            res.add(f"count.ratelimit_{k}_429", float(r["429"]))
            res.add(f"count.ratelimit_{k}_5xx", float(r["5xx"]))
        res.add("count.ratelimit_bodies_5xx", float(sum(s.startswith("5") for s in bodies.status)))
        res.add("count.ratelimit_fuzz_5xx", float(fuzz["5xx_or_dropped"]))
        bench.log_standalone("system_ratelimit", "benchmarks/system_ratelimit",
                             {k: str(v) for k, v in vars(cfg).items()}, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
