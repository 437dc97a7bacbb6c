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


def main(argv: list[str] | None = None) -> int:
    from llmarch_lab.run import bench

    return bench.sweep_main(__doc__, "experiments/finetune.yaml", "finetune", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
