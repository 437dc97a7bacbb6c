"""Fine-tuning sweep: run experiments/finetune.yaml through the runner, print the comparison
table (majority / zero-shot / tuned accuracy and macro-F1 on test, dev macro-F1, train time,
tokens/s, peak RSS for LoRA vs QLoRA), and log it on the suite's parent run in MLflow.

    python benchmarks/finetune.py                       # CPU sweep, 8 runs (resumes finished runs)
    python benchmarks/finetune.py --only sweep --force  # re-run everything
    python benchmarks/finetune.py --suite experiments/gpu/finetune.yaml
    python benchmarks/finetune.py --report-only         # table from the runs already in the store

The best configuration is chosen by dev macro-F1 (`best_on_dev`), never by test. Runs go one at
a time (--workers 1): parallel training would distort tokens/s and peak memory.
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

COLUMNS = {  # table column -> metric
    "majority_acc": "quality.majority_accuracy", "majority_f1": "quality.majority_macro_f1",
    "zero_shot_acc": "quality.zero_shot_accuracy", "zero_shot_f1": "quality.zero_shot_macro_f1",
    "dev_f1": "quality.dev_macro_f1", "tuned_acc": "quality.accuracy", "tuned_f1": "quality.macro_f1",
    "best_eval_loss": "quality.best_eval_loss", "train_s": "latency.train_s",
    "train_tok_per_s": "throughput.train_tok_per_s", "peak_rss_mb": "memory.peak_rss_mb",
}


def compare(suite: str):
    """One row per finished run of the suite (newest per configuration)."""
    import pandas as pd

    from llmarch_lab import tracking

    rows = []
    for r in tracking.search(suite, tags={"lab": "finetune"}):
        p = r["params"]
        row = {"method": p.get("method"), "r": p.get("r"), "lr": p.get("lr"), "model": p.get("model"),
               "steps": r["tags"].get("steps_done"), "n_test": r["tags"].get("n_test")}
        row.update({k: r["metrics"].get(m) for k, m in COLUMNS.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.drop_duplicates(["model", "method", "r", "lr"]).sort_values(["method", "r", "lr"]).reset_index(drop=True)
    df["best_on_dev"] = df.dev_f1 == df.dev_f1.max()
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="experiments/finetune.yaml", help="Suite file.")
    parser.add_argument("--workers", type=int, default=1, help="Notebooks in parallel (timings assume 1).")
    parser.add_argument("--force", action="store_true", help="Re-run runs that already finished.")
    parser.add_argument("--only", action="append", help="Run only this entry (repeatable).")
    parser.add_argument("--report-only", action="store_true", help="Do not run; report the suite's runs.")
    args = parser.parse_args(argv)

    from llmarch_lab import LabError, config, runner, tracking

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
        table = compare(suite.name)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if table.empty:
        print(f"no finished finetune runs in experiment {suite.name!r}")
        return 1
    md = table.to_markdown(index=False, floatfmt=".4g")
    print(md)
    if not args.report_only:
        print(f"\nsweep wall time: {wall:.0f} s ({len(suite.runs)} runs, workers={args.workers})")
    parents = tracking.search(suite.name, tags={"llmarch.parent": "true"}, status="")
    if parents:
        parent = tracking.LabRun(parents[0]["run_id"], owned=False)
        parent.log_table("finetune_comparison", table)
        parent.log_text("finetune_comparison.md", md)
        if not args.report_only:
            parent.log_metrics({"latency.sweep_wall_s": wall})
        print(f"logged the table on parent run {parents[0]['run_id']} of experiment {suite.name!r}")
    return 1 if any(o.status == "FAILED" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
