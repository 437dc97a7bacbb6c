"""Serving sweep: every run of experiments/serving.yaml, then one table of every load level.

    .venv/bin/python benchmarks/serving.py                  # runs the suite (resumes), prints the table
    .venv/bin/python benchmarks/serving.py --report-only    # just the table from MLflow

Needs `make engine-llamacpp engine-vllm` (`make serving` does both). Table columns per (run,
level): TTFT p50/p99, TPOT p50, e2e p99, output tokens/s, goodput under the SLO, error rate, and
the aggregate speedup over the same run's single-stream level.
"""

import sys

from llmarch_lab.run import bench

if __name__ == "__main__":
    sys.exit(bench.sweep_main(__doc__, "experiments/serving.yaml", "serving"))
