"""Executor overhead: N trivial runs on local threads vs a two-node Ray cluster vs submitit-local.

    .venv/bin/python benchmarks/scaleout.py                      # 40 runs, 2 in flight, all three executors
    .venv/bin/python benchmarks/scaleout.py --runs 10 --executors local,ray --no-log

Question: what does an executor cost per run, beside the notebook itself? Each executor runs a
fresh suite of N runs of tests/notebooks/probe.ipynb (logs one metric, no model) with --workers W,
into its own temporary MLflow store (sqlite; --uri for a server). Per run, from the store and the
executed notebook's papermill timestamps:
- kernel start + papermill = the notebook's papermill start to its first cell;
- notebook cells = its cells (imports of the lab + `tracking.start` + `log_result`: MLflow calls);
- worker overhead = the worker's run wall minus the papermill span: the claim, run creation and
  params, starting the notebook child (a Python interpreter importing papermill), the artifacts
  and the final status;
- scheduling = W x suite wall / N minus the run wall: what a slot spent outside any run.
runs/min = N / suite wall. The table goes to the lab's store (experiment `interactive`) unless
--no-log. The Ray cluster is started by the script (ray.cluster_utils: head + one worker node, W/2
CPUs each) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PROBE = TESTS / "notebooks" / "probe.ipynb"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
sys.path.insert(0, str(TESTS))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def one(executor: str, runs: int, workers: int, uri: str | None, address: str | None) -> dict:
    from llmarch_lab import config, paths
    from llmarch_lab.run import runner
    from llmarch_lab.store import tracking

    tmp = Path(tempfile.mkdtemp(prefix=f"scaleout-{executor}-"))
    os.environ["MLFLOW_TRACKING_URI"] = uri or f"sqlite:///{tmp / 'mlflow.db'}"
    name = f"scaleout-{executor}-{int(time.time())}"
    extra = "executor: {kind: slurm, slurm_cluster: local}\n" if executor == "slurm" else ""
    suite_path = tmp / f"{name}.yaml"
    suite_path.write_text(f"suite: {name}\n{extra}runs:\n  - name: p\n    notebook: {PROBE}\n"
                          f"    grid: {{value: [{', '.join(str(i) for i in range(1, runs + 1))}]}}\n")
    suite = config.load_suite(suite_path)
    t0 = time.perf_counter()
    out = runner.run_suite(suite, workers=workers, progress=True, executor=executor if executor != "slurm" else None,
                           address=address)
    wall = time.perf_counter() - t0
    ok = [o for o in out if o.status == "FINISHED"]
    c = tracking.client(paths.tracking_uri())
    kernel, cells, worker_overhead, run_wall = [], [], [], []
    for o in ok:
        nb = json.loads(Path(c.download_artifacts(o.run_id, "notebook/probe.ipynb", str(tmp))).read_text())
        pm = nb["metadata"]["papermill"]
        starts = [_ts(cl["metadata"]["papermill"]["start_time"]) for cl in nb["cells"]
                  if cl["metadata"].get("papermill", {}).get("start_time")]
        span = _ts(pm["end_time"]) - _ts(pm["start_time"])
        kernel.append(min(starts) - _ts(pm["start_time"]))
        cells.append(sum(cl["metadata"]["papermill"].get("duration") or 0 for cl in nb["cells"]
                         if cl["metadata"].get("papermill")))
        worker_overhead.append(o.wall_s - span)
        run_wall.append(o.wall_s)
    mean = statistics.fmean
    label = {"ray": "ray (2 nodes)", "slurm": "submitit-local"}.get(executor, executor)
    return {"executor": label, "runs": runs, "finished": len(ok),
            "workers": workers, "wall_s": round(wall, 1), "runs_per_min": round(60 * len(ok) / wall, 1),
            "run_wall_s": round(mean(run_wall), 2), "kernel_start_s": round(mean(kernel), 2),
            "notebook_cells_s": round(mean(cells), 2), "worker_overhead_s": round(mean(worker_overhead), 2),
            "scheduling_s": round(workers * wall / max(1, len(ok)) - mean(run_wall), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", default="local,ray,slurm")
    ap.add_argument("--uri", default=None, help="a tracking server for every executor (default: one sqlite file each)")
    ap.add_argument("--no-log", action="store_true")
    args = ap.parse_args(argv)
    lab_uri = os.environ.get("MLFLOW_TRACKING_URI")
    rows = []
    for ex in args.executors.split(","):
        cluster = None
        address = None
        if ex == "ray":
            from ray.cluster_utils import Cluster

            half = max(1, args.workers // 2)
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": half, "include_dashboard": False})
            cluster.add_node(num_cpus=max(1, args.workers - half))
            cluster.wait_for_nodes()
            address = cluster.address
        try:
            rows.append(one(ex, args.runs, args.workers, args.uri, address))
        finally:
            if cluster is not None:
                import ray

                if ray.is_initialized():
                    ray.shutdown()
                cluster.shutdown()
    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_markdown(index=False))
    if not args.no_log:
        if lab_uri:
            os.environ["MLFLOW_TRACKING_URI"] = lab_uri
        else:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        bench.log_standalone("scaleout", "benchmarks/scaleout",
                             {"runs": args.runs, "workers": args.workers, "executors": args.executors},
                             Result(tables={"executors": df}))
    return 0 if all(r["finished"] == r["runs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
