"""Cost study: every run of experiments/cost.yaml, then one table per part.

    .venv/bin/python benchmarks/cost.py                  # runs the suite (resumes), prints the tables
    .venv/bin/python benchmarks/cost.py --only routing   # one part
    .venv/bin/python benchmarks/cost.py --report-only    # just the tables from MLflow

Needs `make model-qwen engine-llamacpp engine-litellm` (`make cost` does all of them).
Tables: both models' accuracy on PubMedQA and GSM8K and every router's APGR and large-model share
at 95% of the gap (out-of-fold); the routers on RouteLLM's outcomes; the semantic cache vs
GPTCache and a Zipf trace; the routed gateway's TTFT overhead; the plan (saving, relative quality
loss, $/1M tokens, LiteLLM's agreement). Timings move with whatever else runs on the machine: run
it alone (model outcomes are cached per question, speeds are not).
"""

import sys

from llmarch_lab.run import bench

if __name__ == "__main__":
    sys.exit(bench.sweep_main(__doc__, "experiments/cost.yaml", "cost"))
