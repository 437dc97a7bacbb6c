"""The fine-tuning lab's suite table: majority / zero-shot / tuned accuracy and macro-F1 on test
(raw and calibrated), dev macro-F1, the bootstrap lower bounds, train time, tokens/s, peak RSS.

    from llmarch_lab.labs.finetune.report import report
    report("finetune").print()

The best configuration is marked by dev macro-F1 (`best_on_dev`), never by test.
"""

from __future__ import annotations

from llmarch_lab.common.report import Report, directions_for
from llmarch_lab.store.tables import runs_table

COLUMNS = {  # table column -> metric (headline = the run's `calibrate` choice; raw_ = argmax)
    "majority_acc": "quality.majority_accuracy", "majority_f1": "quality.majority_macro_f1",
    "zs_raw_acc": "quality.zero_shot_raw_accuracy", "zs_raw_f1": "quality.zero_shot_raw_macro_f1",
    "zero_shot_acc": "quality.zero_shot_accuracy", "zero_shot_f1": "quality.zero_shot_macro_f1",
    "dev_f1": "quality.dev_macro_f1", "raw_acc": "quality.raw_accuracy", "raw_f1": "quality.raw_macro_f1",
    "tuned_acc": "quality.accuracy", "tuned_f1": "quality.macro_f1",
    "dev_raw_f1": "quality.dev_raw_macro_f1", "best_step": "count.best_step",
    # lower end of the paired-bootstrap 95% interval of tuned minus baseline (> 0: a clear gain)
    "acc_gain_vs_majority_lo": "quality.accuracy_gain_vs_majority_ci95_low",
    "f1_gain_vs_zero_shot_lo": "quality.macro_f1_gain_vs_zero_shot_ci95_low",
    "best_eval_loss": "quality.best_eval_loss", "train_s": "latency.train_s",
    "train_tok_per_s": "throughput.train_tok_per_s", "peak_rss_mb": "memory.peak_rss_mb",
}


SETTINGS = ["model", "method", "r", "lr", "balance", "calibrate", "max_steps"]


def report(suite: str) -> Report:
    df = runs_table(suite, "finetune", SETTINGS, COLUMNS, newest_per=SETTINGS)
    if len(df):
        df = df.sort_values(["method", "r", "lr", "balance"]).reset_index(drop=True)
        df["best_on_dev"] = df.dev_f1 == df.dev_f1.max()
    notes = ["best_on_dev: the configuration to pick (chosen on dev macro-F1; test columns are for reporting)"]
    return Report(f"fine-tuning runs of suite {suite}", df, directions_for(COLUMNS), notes=notes)
