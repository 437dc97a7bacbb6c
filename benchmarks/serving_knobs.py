"""Batching knobs of llama-server at a fixed load: experiments/serving_knobs.yaml, then the table
and the TTFT p99 vs output tokens/s plot (one point per setting).

    make engine-llama-server
    .venv/bin/python benchmarks/serving_knobs.py                # runs the suite (resumes), prints the table
    .venv/bin/python benchmarks/serving_knobs.py --report-only  # just the table from MLflow

The plot is logged on the suite's parent run (`ttft_p99_vs_throughput.png`).
"""

import sys

from llmarch_lab.run import bench

if __name__ == "__main__":
    sys.exit(bench.sweep_main(__doc__, "experiments/serving_knobs.yaml", "serving"))
