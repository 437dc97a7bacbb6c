"""Quantization sweep: run experiments/quantization.yaml through the runner, print the comparison
table, and log it with the plots on the suite's parent run in MLflow.

    python benchmarks/quantization.py                       # CPU sweep (resumes finished runs)
    python benchmarks/quantization.py --force               # re-run every mode
    python benchmarks/quantization.py --suite experiments/gpu/quantization.yaml
    python benchmarks/quantization.py --report-only         # table and plots from existing runs

Modes run one at a time (--workers 1 by default): they share the machine, and parallel runs
would distort each other's timings; fp32 also has to finish first to serve as the reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="experiments/quantization.yaml", help="Suite file.")
    parser.add_argument("--workers", type=int, default=1, help="Notebooks in parallel (timings assume 1).")
    parser.add_argument("--force", action="store_true", help="Re-run runs that already finished.")
    parser.add_argument("--only", action="append", help="Run only this entry (repeatable).")
    parser.add_argument("--report-only", action="store_true", help="Do not run; report the suite's runs.")
    args = parser.parse_args(argv)

    from llmarch_lab import LabError, config, quant_report, runner, tracking

    try:
        suite = config.load_suite(args.suite, only=args.only)
        t0 = time.perf_counter()
        if not args.report_only:
            outcomes = runner.run_suite(suite, workers=args.workers, force=args.force)
            for o in outcomes:
                if o.status == "FAILED":
                    print(f"FAILED {o.spec.name}: {o.error}", file=sys.stderr)
        wall = time.perf_counter() - t0
        table = quant_report.compare(suite.name)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(quant_report.markdown(table))
    for _, r in table[table.skipped != ""].iterrows():
        print(f"skipped {r.target}/{r.quant}: {r.skipped}")
    if not args.report_only:
        print(f"\nsweep wall time: {wall:.0f} s ({len(suite.runs)} runs, workers={args.workers})")

    # The cross-mode table and plots belong to the suite, not to one mode: log them on the newest
    # parent run of the suite (the runner creates one per invocation that executes something).
    parents = tracking.search(suite.name, tags={"llmarch.parent": "true"}, status="")
    if parents:
        parent = tracking.LabRun(parents[0]["run_id"], owned=False)
        parent.log_table("quantization_comparison", table)
        parent.log_text("quantization_comparison.md", quant_report.markdown(table))
        for name, fig in quant_report.plots(table).items():
            parent.log_figure(name, fig)
        if not args.report_only:
            parent.log_metrics({"latency.sweep_wall_s": wall})
        print(f"logged table and plots on parent run {parents[0]['run_id']} of experiment {suite.name!r}")
    return 1 if not args.report_only and any(o.status == "FAILED" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
