"""Hallucination detection: three detectors of an answer not supported by its source, compared
on HaluEval (QA, dialogue, summarization: Li et al., EMNLP 2023) and TruthfulQA (Lin et al., 2022).

    from llmarch_lab.labs.guardrails import halluc
    cands = halluc.candidates("qa", n_items=400)          # right + hallucinated answer per item
    tab = halluc.table("qa", ["groundedness", "judge", "consistency"], n_items=400)

    python -m llmarch_lab.labs.guardrails.halluc --task qa --n 200      # the table, resumable

Detectors: `groundedness` (the lab's rules.Groundedness: MiniLM cosine of each answer sentence
to the context), `judge` (Qwen2.5-Coder-0.5B-Instruct on llama-server asked yes/no, scored by the
first token's yes vs no log-probs), `consistency` / `consistency-em` (SelfCheckGPT-style agreement
with k sampled answers), and `length` (a reference). Thresholds are chosen on the dev half of a
seeded split of items, accuracy and ROC-AUC reported on the test half with item-bootstrap 95%
intervals.

One module a job: data.py (loaders, split, candidates, the data/ extraction), judge.py (the yes/no
judge), consistency.py (sampling, agreement), metrics.py (threshold, accuracy, AUC, bootstrap),
evaluate.py (scoring with a per-candidate cache, the served model, the table), __main__.py (CLI).
"""

from llmarch_lab.labs.guardrails.halluc.data import TASKS, candidates, load_halueval, load_truthfulqa
from llmarch_lab.labs.guardrails.halluc.evaluate import METHODS, Server, score, server, table
from llmarch_lab.labs.guardrails.halluc.metrics import auc, best_threshold, summarize

__all__ = ["TASKS", "candidates", "load_halueval", "load_truthfulqa", "METHODS", "Server", "score", "server",
           "table", "auc", "best_threshold", "summarize"]
