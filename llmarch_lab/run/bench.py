"""The driver that benchmark scripts share: run a suite, print a comparison table, log it.

    sys.exit(bench.sweep_main(__doc__, "experiments/quantization.yaml", "quantization"))

The table is the lab's own report (registry.report(lab, suite) -> common.report.Report), built
from the suite's FINISHED runs, so `--report-only` prints it again without running anything. The table, its markdown
and the plots go on the newest parent run of the suite: they describe the sweep, not one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
               ("MPLBACKEND", "Agg")):
    os.environ.setdefault(_k, _v)


def sweep_main(doc: str, default_suite: str, lab: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("--suite", default=default_suite, help="Suite file.")
    parser.add_argument("--workers", type=int, default=1, help="Notebooks in parallel (timings assume 1).")
    parser.add_argument("--force", action="store_true", help="Re-run runs that already finished.")
    parser.add_argument("--only", action="append", help="Run only this entry (repeatable).")
    parser.add_argument("--report-only", action="store_true", help="Do not run; report the suite's runs.")
    args = parser.parse_args(argv)

    from llmarch_lab import LabError, config, registry
    from llmarch_lab.run import runner
    from llmarch_lab.store import tracking

    outcomes = []
    try:
        suite = config.load_suite(args.suite, only=args.only)
        t0 = time.perf_counter()
        if not args.report_only:
            outcomes = runner.run_suite(suite, workers=args.workers, force=args.force)
            for o in outcomes:
                if o.status == "FAILED":
                    print(f"FAILED {o.spec.name}: {o.error}", file=sys.stderr)
        wall = time.perf_counter() - t0
        reps = [r for r in registry.reports(lab, suite.name) if not r.empty]
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not reps:
        print(f"no finished {lab} runs in experiment {suite.name!r}")
        return 1
    md = "\n".join(rep.markdown() for rep in reps)
    print(md)
    if not args.report_only:
        print(f"\nsweep wall time: {wall:.0f} s ({len(suite.runs)} runs, workers={args.workers})")
    parents = tracking.search(suite.name, tags={"llmarch.parent": "true"}, status="")
    if parents:
        parent = tracking.LabRun(parents[0]["run_id"], owned=False, after_end=True)
        for i, rep in enumerate(reps):
            parent.log_table(f"{lab}_comparison" + (f"_{i}" if len(reps) > 1 else ""), rep.table)
            for fig_name, fig in rep.figures.items():
                parent.log_figure(fig_name, fig)
        parent.log_text(f"{lab}_comparison.md", md)
        if not args.report_only:
            parent.log_metrics({"latency.sweep_wall_s": wall})
        print(f"logged the table{'s' if len(reps) > 1 else ''} on parent run {parents[0]['run_id']} "
              f"of experiment {suite.name!r}")
    return 1 if any(o.status == "FAILED" for o in outcomes) else 0


def log_standalone(lab: str, script: str, params: dict, result) -> str:
    """Log a benchmark that is not a suite run (no notebook) as one interactive MLflow run:
    `params` become a LabParams model named after `lab`, so the run carries the usual schema
    tags. Returns the run id."""
    from pydantic import create_model

    from llmarch_lab.config import LabParams
    from llmarch_lab.store import tracking

    model = create_model(f"{lab}_params", __base__=LabParams, **{k: (type(v), v) for k, v in params.items()})
    model.lab = lab
    run = tracking.start(model(), notebook=script)
    run.log_result(result)
    run.close()
    return run.run_id
