"""Tracking-server write benchmark: N writer processes log M metrics each to one MLflow server.

    .venv/bin/python benchmarks/tracking_writers.py                      # .tracking/ server (started if needed)
    .venv/bin/python benchmarks/tracking_writers.py --writers 16 --metrics 2000 --batch 50
    .venv/bin/python benchmarks/tracking_writers.py --uri http://10.0.0.5:5001 --no-log

Question: does the shared server (llmarch_lab.store.trackserver: mlflow on PostgreSQL) take many
concurrent writers without losing a metric? Each writer is its own process (spawn) with its own
run; all start on one signal and log M metrics (10 keys x M/10 steps) in log_batch calls of
--batch metrics (--batch 1: one log_metric call each). Afterwards every (key, step, value) is
read back with get_metric_history: lost = sent - found, errors = calls that raised. Wall time
runs from the start signal to the last writer's end. Exit 1 if anything was lost or failed.
Without --uri, the server in --root (default .tracking/) is started if it is not running and
stopped again afterwards if this script started it. The table goes to the lab's store
(MLFLOW_TRACKING_URI or mlruns/, experiment `interactive`) unless --no-log.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
KEYS = 10


def expected(writer: int, metrics: int) -> list[tuple[str, int, float]]:
    return [(f"count.k{i % KEYS}", i // KEYS, writer * 1e7 + i) for i in range(metrics)]


def write(uri: str, experiment_id: str, writer: int, metrics: int, batch: int, sync: str) -> tuple[str, int, list[str]]:
    """One writer process: (run id, calls made, error messages)."""
    import mlflow
    from mlflow.entities import Metric

    c = mlflow.MlflowClient(uri)
    Path(sync, f"ready-{writer}").touch()
    while not Path(sync, "go").exists():
        time.sleep(0.01)
    run_id = c.create_run(experiment_id, run_name=f"writer-{writer}").info.run_id
    rows, errors, calls = expected(writer, metrics), [], 0
    now = int(time.time() * 1000)
    for i in range(0, len(rows), batch):
        calls += 1
        try:
            if batch == 1:
                c.log_metric(run_id, rows[i][0], rows[i][2], step=rows[i][1], timestamp=now)
            else:
                c.log_batch(run_id, metrics=[Metric(k, v, now, s) for k, s, v in rows[i:i + batch]])
        except Exception as e:  # counted, not raised: the table reports them
            errors.append(f"{type(e).__name__}: {str(e)[:200]}")
    c.set_terminated(run_id)
    return run_id, calls, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, default=8, help="Writer processes.")
    ap.add_argument("--metrics", type=int, default=1000, help="Metrics per writer.")
    ap.add_argument("--batch", type=int, default=100, help="Metrics per log_batch call (1: log_metric).")
    ap.add_argument("--uri", help="A running tracking server (default: start the one in --root).")
    ap.add_argument("--root", type=Path, help="trackserver folder (default .tracking/).")
    ap.add_argument("--port", type=int, default=5001, help="trackserver port when it is started here.")
    ap.add_argument("--no-log", action="store_true", help="Do not log to MLflow.")
    a = ap.parse_args(argv)

    import mlflow
    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.store import trackserver

    started = False
    try:
        if a.uri:
            uri = a.uri
        else:
            info = trackserver.start(a.root, port=a.port)
            uri, started = info["uri"], info["started"]
        c = mlflow.MlflowClient(uri)
        exp = c.create_experiment(f"tracking-writers-{time.strftime('%Y%m%d-%H%M%S')}")
        with tempfile.TemporaryDirectory() as sync, concurrent.futures.ProcessPoolExecutor(
                a.writers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futs = [pool.submit(write, uri, exp, w, a.metrics, a.batch, sync) for w in range(a.writers)]
            while len(list(Path(sync).glob("ready-*"))) < a.writers:
                if any(f.done() for f in futs):
                    [f.result() for f in futs if f.done()]  # a writer died before the start: raise its error
                time.sleep(0.05)
            t0 = time.perf_counter()
            Path(sync, "go").touch()
            results = [f.result() for f in futs]
            wall = time.perf_counter() - t0
        found = 0
        for w, (run_id, _, _) in enumerate(results):
            want = set(expected(w, a.metrics))
            got = {(key, m.step, m.value) for key in {k for k, _, _ in want} for m in c.get_metric_history(run_id, key)}
            found += len(want & got)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if started:
            trackserver.stop(a.root)
    sent = a.writers * a.metrics
    calls = sum(r[1] for r in results)
    errors = [e for r in results for e in r[2]]
    row = {"writers": a.writers, "metrics sent": sent, "metrics found": found, "lost": sent - found,
           "errors": len(errors), "wall s": wall, "metrics/s": sent / wall}
    df = pd.DataFrame([row])
    print(f"\n{a.writers} writer processes x {a.metrics} metrics ({'log_metric' if a.batch == 1 else f'log_batch of {a.batch}'}) "
          f"-> {uri}, {os.cpu_count()} cores shared by writers and server")
    print(df.to_markdown(index=False, floatfmt=[".0f"] * 5 + [".1f", ".0f"]))
    for e in errors[:5]:
        print(f"  error: {e}")
    ok = found == sent and not errors
    print("\nnothing lost" if ok else f"\nLOST {sent - found} metrics, {len(errors)} failed calls")
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        res = Result(tables={"writers": df}, tags={"tracking_uri": uri})
        res.add("throughput.metrics_per_s", sent / wall)
        res.add("latency.wall_s", wall)
        res.add("errors.write_error_rate", len(errors) / max(calls, 1))
        res.add("errors.lost_metric_error_rate", (sent - found) / max(sent, 1))
        bench.log_standalone("tracking_writers", "benchmarks/tracking_writers",
                             {"writers": a.writers, "metrics": a.metrics, "batch": a.batch}, res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
