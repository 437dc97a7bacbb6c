"""Is a fine-tuning run's gain over the majority label and the zero-shot model real? Paired
bootstrap 95% intervals of the difference in test accuracy and macro-F1, from the `predictions`
table a finished run logged (runs made since the lab logs it also carry it as table
`significance`; this script recomputes it for any run, older ones included).

    python benchmarks/finetune_significance.py RUN_ID [RUN_ID ...]
    MLFLOW_TRACKING_URI=sqlite:////tmp/ft/mlflow.db python benchmarks/finetune_significance.py RUN_ID
"""

from __future__ import annotations

import argparse
import sys

from llmarch_lab.common.entry import one_line_errors


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_ids", nargs="+", help="MLflow run ids of finished fine-tuning runs.")
    parser.add_argument("--resamples", type=int, default=2000, help="Bootstrap resamples (default 2000).")
    args = parser.parse_args(argv)

    import pandas as pd

    from llmarch_lab.labs.finetune.scoring import paired_bootstrap
    from llmarch_lab.store import tracking

    for run_id in args.run_ids:
        table = tracking.load_table(run_id, "predictions")
        sig = paired_bootstrap(table, n_resamples=args.resamples)
        print(f"\nrun {run_id}: {len(table)} test questions, {args.resamples} paired resamples")
        print(pd.DataFrame(sig).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
