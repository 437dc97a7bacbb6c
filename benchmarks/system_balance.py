"""Load balancing, failover and fallback through LiteLLM's Router over llama-server replicas
(llmarch_lab/system/ops/balance.py): one table, logged to MLflow.

    .venv/bin/python benchmarks/system_balance.py                    # 96 requests per scenario (~6 min)
    .venv/bin/python benchmarks/system_balance.py --requests 24 --no-log

Same load (closed loop, --concurrency in flight) and the same total CPU (--threads split over the
replicas) for every scenario. Needs make engine-llama-server engine-litellm model-qwen-0.5b.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=96, help="Requests per scenario.")
    ap.add_argument("--concurrency", type=int, default=4, help="Requests in flight.")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--kill-after", type=float, default=15.0, help="Failover: seconds before one replica is killed.")
    ap.add_argument("--log-dir", default="", help="Engine and proxy logs (default: a temporary folder).")
    ap.add_argument("--no-log", action="store_true", help="Do not log to MLflow.")
    a = ap.parse_args(argv)

    from llmarch_lab.system.ops import balance

    cfg = balance.BalanceConfig(requests=a.requests, concurrency=a.concurrency, replicas=a.replicas,
                                kill_after_s=a.kill_after)
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="llmarch-balance-")
    out = balance.run(cfg, log_dir)
    df = out["table"]
    print(f"\nLiteLLM Router over llama-server (SmolLM2-135M), {cfg.concurrency} in flight, {cfg.requests} requests, "
          f"{cfg.threads} threads and {cfg.slots} slots in all, {os.cpu_count()} cores; logs {log_dir}")
    print(df.to_markdown(index=False, floatfmt=".3g"))
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        res = Result(tables={"balance": df})
        for r in df.itertuples():
            key = re.sub(r"[^a-z0-9]+", "_", r.scenario.split(" (")[0].lower()).strip("_")
            res.add(f"throughput.balance_{key}_req_per_s", float(r.req_per_s))
            if r.e2e_ms_p99 == r.e2e_ms_p99:
                res.add(f"latency.balance_{key}_e2e_ms_p99", float(r.e2e_ms_p99))
            res.add(f"count.balance_{key}_failed", float(r.failed))
        bench.log_standalone("system_balance", "benchmarks/system_balance",
                             {k: str(v) for k, v in vars(cfg).items()}, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
