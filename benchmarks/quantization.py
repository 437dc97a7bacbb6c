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

import sys


def main(argv: list[str] | None = None) -> int:
    from llmarch_lab.run import bench

    return bench.sweep_main(__doc__, "experiments/quantization.yaml", "quantization", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
