"""Routing between a small and a large model, scored the way RouteLLM scores it.

    from llmarch_lab.labs.cost import routing
    train, test = routing.split(df, test_fraction=0.5, seed=0)
    table = routing.evaluate(["random", "rule", "minilm-lr", "knn"], train, test)
    table = routing.routellm_replication()          # GSM8K, MMLU, MT-Bench; see PUBLISHED

Outcome frames have one row per question: qid, prompt, strong (large-model quality in [0, 1]), weak
(small-model quality), optionally small_conf (higher = the small model is more confident) and task.
Every router has `name`, `fit(train_df) -> self` and `score(df) -> np.ndarray`, where a HIGHER score
means "send this one to the large model". A fitted router pickles (`save` / `load`); a gateway in
another process calls `router.score(pd.DataFrame({"prompt": [text]}))`.

The evaluation follows RouteLLM's own code (lm-sys/RouteLLM, routellm/evals/benchmarks.py and
evaluate.py), not a re-derivation of the paper's formulas:
- `curve`: the thresholds are the n+1 edges of `pd.qcut(scores, n)` (n=10 there: `--num-results`),
  i.e. the 0, 10%, ..., 100% quantiles of the scores; a question goes to the large model when its
  score >= the threshold (> for the last edge, so the curve ends at share 0). Each threshold gives
  one point (large-model share, mean quality).
- `apgr`: (trapz(quality) - weak area) / (strong area - weak area) over the share axis, exactly
  evaluate.py's apgr_metric; with the curve spanning shares 0..1 this is the area under PGR.
- `share_for_gap` is CPT(x%): the smallest large-model share reaching weak + x * (strong - weak).
  RouteLLM uses np.interp(target, accuracy, share), which assumes a rising curve; we take the
  first crossing of the piecewise-linear curve instead (same on a rising curve, and monotonic in x
  on any curve).
- cost saving (the paper's Table 6): "the inverse of the ratio of GPT-4 calls made by our
  top-performing router relative to the random baseline" at CPT(50%) / CPT(80%), e.g. MT Bench
  3.66x = random 49.03% / matrix factorization 13.40%. We divide by the random router's expected
  share (exactly x: random routing's expected curve is the straight line), not by a noisy draw.

Modules (each imports only those before it): base.py (settings, cached MiniLM embeddings), frames.py
(checked outcome frames, split), routers.py (the routers, make, save, load), evaluate.py (curves,
APGR, out-of-fold scores), routellm.py (RouteLLM's outcomes, the published numbers). This package
re-exports their public names.
"""

from llmarch_lab.labs.cost.routing.base import (
    EMBEDDER,
    GAP_FRACS,
    ROUTERS,
    SMALL_COST_RATIO,
    embed,
)
from llmarch_lab.labs.cost.routing.evaluate import (
    apgr,
    as_routers,
    curve,
    curves_plot,
    evaluate,
    evaluate_scores,
    oof_scores,
    pgr,
    prefetch_embeddings,
    relative_cost,
    share_for_gap,
)
from llmarch_lab.labs.cost.routing.frames import (
    need_columns,
    outcome_arrays,
    prompt_texts,
    split,
    weak_ok,
)
from llmarch_lab.labs.cost.routing.routellm import (
    PUBLISHED,
    PUBLISHED_COST_SAVING,
    published,
    routellm_replication,
)
from llmarch_lab.labs.cost.routing.routers import (
    CascadeRouter,
    ConfidenceRouter,
    EmbeddingLR,
    KNNRouter,
    RandomRouter,
    Router,
    RuleRouter,
    load,
    make,
    rule_features,
    save,
)

__all__ = ["apgr", "as_routers", "CascadeRouter", "ConfidenceRouter", "curve", "curves_plot", "embed",
           "EMBEDDER", "EmbeddingLR", "evaluate", "evaluate_scores", "GAP_FRACS",
           "KNNRouter", "load", "make", "need_columns", "oof_scores", "outcome_arrays", "pgr",
           "prefetch_embeddings", "prompt_texts", "PUBLISHED", "published", "PUBLISHED_COST_SAVING",
           "RandomRouter", "relative_cost", "routellm_replication", "Router", "ROUTERS", "rule_features",
           "RuleRouter", "save", "share_for_gap", "SMALL_COST_RATIO", "split", "weak_ok"]
