"""Compare the same suite in two MLflow stores, run by run: which metrics are identical.

    python benchmarks/compare_stores.py sqlite:///before/mlflow.db sqlite:///after/mlflow.db quickstart

For a refactor that must not change results (House v2): the newest FINISHED run of each name in
each store, metric by metric. `--renamed old=new` maps a metric that changed its name. Prints one
row per run (identical / differing / only-before / only-after metrics) and the differing values;
exits 1 if any metric present in both differs by more than `--rtol`. It reads the stores only.
"""

from __future__ import annotations

import argparse
import sys


def newest_runs(uri: str, suite: str) -> dict[str, dict[str, float]]:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(suite)
    if exp is None:
        raise SystemExit(f"error: no experiment {suite!r} in {uri}")
    out: dict[str, dict[str, float]] = {}
    for r in c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]):
        name = r.data.tags.get("llmarch.name")
        if name and r.data.tags.get("llmarch.parent") != "true":
            out.setdefault(name, dict(r.data.metrics))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("before", "after", "suite"):
        ap.add_argument(name)
    ap.add_argument("--renamed", action="append", default=[], help="old=new metric name (repeatable)")
    ap.add_argument("--prefixes", default="quality.,count.,errors.,memory.weights",
                    help="compare only metrics starting with one of these (comma-separated); speed varies with load")
    ap.add_argument("--rtol", type=float, default=1e-9)
    a = ap.parse_args(argv)
    ren = dict(x.split("=", 1) for x in a.renamed)
    prefixes = tuple(a.prefixes.split(","))
    before, after = newest_runs(a.before, a.suite), newest_runs(a.after, a.suite)
    bad = False
    print("| run | identical | differing | only before | only after |\n|---|---|---|---|---|")
    diffs = []
    for run in sorted(set(before) | set(after)):
        b = {ren.get(k, k): v for k, v in before.get(run, {}).items() if ren.get(k, k).startswith(prefixes)}
        f = {k: v for k, v in after.get(run, {}).items() if k.startswith(prefixes)}
        same = [k for k in b if k in f and abs(b[k] - f[k]) <= a.rtol * max(1.0, abs(b[k]))]
        differ = [k for k in b if k in f and k not in same]
        diffs += [(run, k, b[k], f[k]) for k in differ]
        bad |= bool(differ)
        print(f"| {run} | {len(same)} | {len(differ)} | {len(set(b) - set(f))} | {len(set(f) - set(b))} |")
    for run, k, x, y in diffs:
        print(f"DIFF {run} {k}: {x!r} -> {y!r}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
