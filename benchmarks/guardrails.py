"""Guardrails study: every run of experiments/guardrails.yaml, then one table per part.

    .venv/bin/python benchmarks/guardrails.py                  # runs the suite (resumes), prints the tables
    .venv/bin/python benchmarks/guardrails.py --only injection # one part
    .venv/bin/python benchmarks/guardrails.py --report-only    # just the tables from MLflow

Needs `make engine-llamacpp engine-litellm engine-garak` (`make guardrails` does all three).
Tables: PII configurations (span-level P / R / F2, latency), injection detectors (out-of-fold
P / R / F1 / AUC / benign FPR, p50 / p95 ms on one thread, with the latency vs F1 Pareto plot),
toxicity, output-validation strategies and groundedness, the whole guard stack per request, and
the garak attack success rate with and without the gateway's guard. Timings move with whatever
else runs on the machine: run it alone.
"""

import sys

from llmarch_lab.run import bench

if __name__ == "__main__":
    sys.exit(bench.sweep_main(__doc__, "experiments/guardrails.yaml", "guardrails"))
