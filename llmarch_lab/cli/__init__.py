"""`llmarch-lab`: run suites, list suites and notebooks, browse results.

    llmarch-lab run experiments/quickstart.yaml            # run (resumes: finished runs are skipped)
    llmarch-lab run quickstart --only rag --force         # one entry, re-run even if finished
    llmarch-lab run experiments/quantization.yaml --workers 2 --dry-run --show-params
    llmarch-lab list                                       # suites, notebooks and their parameters
    llmarch-lab report quickstart                          # each lab's table of a suite's runs
    llmarch-lab run quickstart --executor ray --workers 4    # on a Ray cluster (or slurm)
    llmarch-lab status quickstart --watch 2               # each run: status, host, heartbeat age
    llmarch-lab ui                                         # mlflow ui on 127.0.0.1:5000

Bad input (a suite, a parameter, a flag, the store) prints one line (`error: file:line: field:
message`) and exits with status 2 before anything runs or is written; a failed run makes `run`
exit with status 1. LLMARCH_DEBUG=1 shows a traceback for an unexpected error.
"""

from llmarch_lab.cli.main import console_main, main

__all__ = ["console_main", "main"]
