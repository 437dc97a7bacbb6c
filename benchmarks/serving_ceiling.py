"""Load-generator ceiling: requests/s the lab's client sustains against a trivial streaming server.

    .venv/bin/python benchmarks/serving_ceiling.py                 # levels 1,16,64,256; logs to MLflow
    .venv/bin/python benchmarks/serving_ceiling.py --tokens 64 --no-log

Question: can the client ever be the bottleneck of a serving benchmark on this machine? The
server (llmarch_lab/llm/loopback.py, its own process) streams `--tokens` chunks per request
at once, so everything measured is the client's cost (plus the loopback server's). Goal from the
serving issue: at least 500 requests/s. Engines on this machine peak well below 20 requests/s.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,16,64,256", help="Concurrency levels.")
    ap.add_argument("--requests", type=int, default=3000, help="Requests per level at most.")
    ap.add_argument("--seconds", type=float, default=15.0, help="Seconds per level at most.")
    ap.add_argument("--tokens", type=int, default=16, help="Chunks streamed per request.")
    ap.add_argument("--no-log", action="store_true", help="Do not log to MLflow.")
    a = ap.parse_args(argv)

    import pandas as pd

    from llmarch_lab.labs.serving import metrics
    from llmarch_lab.llm import load, loopback

    proc, base = loopback.start(tokens=a.tokens)
    rows = []
    try:
        target = load.Target(base, "loopback", timeout_s=30)
        load.preflight(target)
        reqs = (load.Request(i, [{"role": "user", "content": "hi"}], a.tokens) for i in itertools.count())
        load.run_level(target, reqs, "concurrent", 8, max_requests=200)  # warm-up
        for level in [int(x) for x in a.levels.split(",")]:
            recs, wall = load.run_level(target, reqs, "concurrent", level, a.requests, a.seconds)
            m = metrics.summarize(recs, wall)
            rows.append({"concurrency": level, "requests": len(recs), "errors": int(m["errors.error_rate"] * len(recs)),
                         "req_per_s": m["throughput.req_per_s"], "chunks_per_s": m["throughput.output_tok_per_s"],
                         "e2e_p50_ms": m.get("latency.e2e_ms_p50"), "e2e_p99_ms": m.get("latency.e2e_ms_p99")})
            print(rows[-1], flush=True)
    finally:
        proc.kill()
    df = pd.DataFrame(rows)
    best = df.req_per_s.max()
    print(f"\nclient ceiling against a trivial streaming server, {a.tokens} chunks/request, loopback, "
          f"{os.cpu_count()} cores shared by client and server")
    print(df.to_markdown(index=False, floatfmt=".1f"))
    print(f"\nceiling: {best:.0f} requests/s ({'meets' if best >= 500 else 'BELOW'} the 500 requests/s goal)")
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        res = Result(tables={"ceiling": df}, tags={"server": "llmarch_lab.llm.loopback"})
        res.add("throughput.client_ceiling_req_per_s", best)
        bench.log_standalone("serving_ceiling", "benchmarks/serving_ceiling",
                             {"tokens": a.tokens, "requests": a.requests}, res)
    return 0 if best >= 500 else 1


if __name__ == "__main__":
    sys.exit(main())
