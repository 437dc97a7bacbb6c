"""The text routers on RouteLLM's own outcomes, beside the paper's published numbers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from llmarch_lab.labs.cost.routing.evaluate import as_routers, curve, evaluate_scores, oof_scores, prefetch_embeddings
from llmarch_lab.labs.cost.routing.frames import outcome_arrays, split

# ----------------------------------------------------------------------------- RouteLLM replication
# Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data", arXiv:2406.18665 (v4, ICLR 2025).
# Strong gpt-4-1106-preview, weak Mixtral-8x7B-Instruct; their routers are trained on Chatbot Arena
# preferences (D_arena), optionally augmented: D_judge = GPT-4-judged Nectar pairs, D_gold = MMLU
# validation golden labels. Ours are trained in-domain (on a split of the same benchmark).
# Provenance: the paper's own PDF/HTML could not be read here (the stored copies give only its
# opening). MT Bench Table 1 is taken in full from a transcription that states it was checked
# against arXiv v4 Tables 1-7 (a "reader's summary of the LMSYS paper", found with the search tool);
# its random CPTs (49.03%, 78.08%) and the MF row (13.40%, 31.31%, 0.802) agree with two other
# independent transcriptions and with Table 6 (49.03 / 13.40 = 3.66x). For MMLU (Table 2) and GSM8K
# (Table 3) only the rows quoted by those transcriptions are recorded; the other rows are left out,
# not guessed (the transcription gives only ranges: MMLU arena-only APGR 0.473-0.524, arena+gold
# 0.572-0.603; GSM8K arena-only 0.438-0.475, arena+judge 0.531-0.622). Shares are fractions.
PUBLISHED = (
    # MT Bench, Table 1
    dict(bench="mt_bench", router="Random (95% CI)", train_data="-", cpt_50=0.4903, cpt_80=0.7808, apgr=0.500, table="Table 1"),
    dict(bench="mt_bench", router="BERT", train_data="arena", cpt_50=0.7809, cpt_80=0.8764, apgr=0.391, table="Table 1"),
    dict(bench="mt_bench", router="Causal LLM", train_data="arena", cpt_50=0.2882, cpt_80=0.7753, apgr=0.573, table="Table 1"),
    dict(bench="mt_bench", router="Matrix Factorization", train_data="arena", cpt_50=0.2532, cpt_80=0.7426, apgr=0.580,
         table="Table 1"),
    dict(bench="mt_bench", router="SW Ranking", train_data="arena", cpt_50=0.3785, cpt_80=0.5899, apgr=0.610, table="Table 1"),
    dict(bench="mt_bench", router="BERT", train_data="arena+judge", cpt_50=0.1958, cpt_80=0.3402, apgr=0.751, table="Table 1"),
    dict(bench="mt_bench", router="Causal LLM", train_data="arena+judge", cpt_50=0.3150, cpt_80=0.4875, apgr=0.679,
         table="Table 1"),
    dict(bench="mt_bench", router="Matrix Factorization", train_data="arena+judge", cpt_50=0.1340, cpt_80=0.3131,
         apgr=0.802, table="Table 1"),
    dict(bench="mt_bench", router="SW Ranking", train_data="arena+judge", cpt_50=0.2321, cpt_80=0.3604, apgr=0.759,
         table="Table 1"),
    # MMLU, Table 2 (best rows only, see above)
    dict(bench="mmlu", router="SW Ranking", train_data="arena+gold", cpt_50=0.354, cpt_80=float("nan"), apgr=0.603,
         table="Table 2"),
    dict(bench="mmlu", router="Causal LLM", train_data="arena+gold", cpt_50=0.355, cpt_80=float("nan"), apgr=0.600,
         table="Table 2"),
    # GSM8K, Table 3 (best row only)
    dict(bench="gsm8k", router="Causal LLM", train_data="arena+judge", cpt_50=0.336, cpt_80=0.633, apgr=0.622,
         table="Table 3"),
)
# Table 6: cost saving ratio of the best router vs random routing at CPT(50%) and CPT(80%).
PUBLISHED_COST_SAVING = {"mt_bench": {"cpt_50": 3.66, "cpt_80": 2.49}, "mmlu": {"cpt_50": 1.41, "cpt_80": 1.14},
                         "gsm8k": {"cpt_50": 1.49, "cpt_80": 1.27}}


def published() -> pd.DataFrame:
    """PUBLISHED as a frame, with source = "RouteLLM paper (<train data>)"."""
    df = pd.DataFrame(list(PUBLISHED))
    df["source"] = "RouteLLM paper (" + df["train_data"] + ")"
    return df


def routellm_replication(benches: Sequence[str] = ("gsm8k", "mmlu", "mt_bench"), test_fraction: float = 0.5,
                         seed: int = 0, routers: Sequence[str] = ("random", "rule", "minilm-lr", "knn"),
                         cv_folds: int | None = None, n_boot: int = 1000, n: int | None = 10,
                         return_curves: bool = False):
    """Our routers on RouteLLM's own precomputed outcomes (GPT-4-1106 vs Mixtral-8x7B).

    Trained in-domain: a seeded half split of each benchmark (stratified by MMLU subject), or, with
    cv_folds, out-of-fold scores on every row. MT-Bench (72 questions) always uses cv_folds (default 5,
    stratified by category) so its test set is not 36 questions. Compare with `published()`, whose
    routers were trained on Chatbot Arena preferences (plus judge / golden-label augmentation)."""
    from llmarch_lab.assets import datasets

    rows, all_curves = [], {}
    for bench in benches:
        df = datasets.routellm_outcomes(bench)
        strat = "subject" if df["subject"].nunique() > 1 else None
        folds = cv_folds or (5 if bench == "mt_bench" else None)
        rs = as_routers(list(routers))
        if folds:
            prefetch_embeddings(rs, df)
            scores = {k: oof_scores(r, df, folds, seed, strat) for k, r in rs.items()}
            test, protocol = df, f"{folds}-fold out-of-fold"
        else:
            train, test = split(df, test_fraction, seed, strat)
            prefetch_embeddings(rs, train, test)
            scores = {k: np.asarray(r.fit(train).score(test), dtype=float) for k, r in rs.items()}
            protocol = f"split {1 - test_fraction:.0%}/{test_fraction:.0%}"
        t = evaluate_scores(scores, test, n_boot=n_boot, seed=seed, n=n,
                            pays_small_always={k: r.pays_small_always for k, r in rs.items()})
        t.insert(0, "bench", bench)
        t["protocol"] = protocol
        t["source"] = "ours (in-domain)"
        rows.append(t)
        if return_curves:
            strong, weak = outcome_arrays(test, bench)
            all_curves[bench] = {k: curve(v, strong, weak, n) for k, v in scores.items()}
    table = pd.concat(rows, ignore_index=True)
    return (table, all_curves) if return_curves else table
