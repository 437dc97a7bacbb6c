"""Fine-tuning sweep: run experiments/finetune.yaml through the runner, print the comparison
table (majority / zero-shot / tuned accuracy and macro-F1 on test, raw and calibrated, dev macro-F1, train time,
tokens/s, peak RSS for LoRA vs QLoRA), and log it on the suite's parent run in MLflow.

    python benchmarks/finetune.py                       # CPU sweep, 8 runs, ~6 h on 2 cores (resumes finished runs)
    python benchmarks/finetune.py --only sweep --force  # re-run everything
    python benchmarks/finetune.py --suite experiments/gpu/finetune.yaml
    python benchmarks/finetune.py --report-only         # table from the runs already in the store

The best configuration is chosen by dev macro-F1 (`best_on_dev`), never by test. Runs go one at
a time (--workers 1): parallel training would distort tokens/s and peak memory.
"""

from __future__ import annotations

import sys

COLUMNS = {  # table column -> metric (headline = the run's `calibrate` choice; raw_ = argmax)
    "majority_acc": "quality.majority_accuracy", "majority_f1": "quality.majority_macro_f1",
    "zs_raw_acc": "quality.zero_shot_raw_accuracy", "zs_raw_f1": "quality.zero_shot_raw_macro_f1",
    "zero_shot_acc": "quality.zero_shot_accuracy", "zero_shot_f1": "quality.zero_shot_macro_f1",
    "dev_f1": "quality.dev_macro_f1", "raw_acc": "quality.raw_accuracy", "raw_f1": "quality.raw_macro_f1",
    "tuned_acc": "quality.accuracy", "tuned_f1": "quality.macro_f1",
    "dev_raw_f1": "quality.dev_raw_macro_f1", "best_step": "quality.best_step",
    # lower end of the paired-bootstrap 95% interval of tuned minus baseline (> 0: a clear gain)
    "acc_gain_vs_majority_lo": "quality.accuracy_gain_vs_majority_ci95_low",
    "f1_gain_vs_zero_shot_lo": "quality.macro_f1_gain_vs_zero_shot_ci95_low",
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
        row = {"method": p.get("method"), "r": p.get("r"), "lr": p.get("lr"), "balance": p.get("balance"),
               "calibrate": p.get("calibrate"), "model": p.get("model"),
               "steps": r["tags"].get("steps_done"), "n_test": r["tags"].get("n_test")}
        row.update({k: r["metrics"].get(m) for k, m in COLUMNS.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    keys = ["model", "method", "r", "lr", "balance", "calibrate"]
    df = df.drop_duplicates(keys).sort_values(["method", "r", "lr", "balance"]).reset_index(drop=True)
    df["best_on_dev"] = df.dev_f1 == df.dev_f1.max()
    return df


def main(argv: list[str] | None = None) -> int:
    from llmarch_lab import bench

    return bench.sweep_main(__doc__, "experiments/finetune.yaml", "finetune", compare, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
