"""Part `hallucination`: one hallucination detector (the groundedness check, an LLM judge on
llama-server, or SelfCheckGPT-style self-consistency) on one task (HaluEval QA / dialogue /
summarization, or TruthfulQA): accuracy at the dev half's threshold and ROC-AUC on the test half,
with item-bootstrap 95% intervals (halluc/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab.labs.guardrails.parts.base import GuardrailsPart
from llmarch_lab.results import Result


class HallucinationParams(GuardrailsPart):
    part: Literal["hallucination"] = "hallucination"
    halluc_task: Literal["qa", "dialogue", "summarization", "truthfulqa"] = Field(
        "qa", description="HaluEval task (qa, dialogue, summarization) or truthfulqa (no context).")
    halluc_items: int = Field(200, ge=2, le=500, description="Test items (the dev half gets as many); each gives "
                              "its right and its hallucinated answer.")
    halluc_method: Literal["groundedness", "judge", "consistency", "consistency-em", "length"] = Field(
        "judge", description="groundedness (MiniLM vs the context), judge (Qwen2.5-Coder-0.5B yes/no log-probs on "
        "llama-server), consistency / consistency-em (agreement with 5 samples), length (a reference).")

    @model_validator(mode="after")
    def _needs_context(self):
        if self.halluc_method == "groundedness" and self.halluc_task == "truthfulqa":
            raise ValueError("halluc_method=groundedness needs a context; truthfulqa has none")
        return self


REPORT = ("guardrails hallucination: detectors on HaluEval / TruthfulQA", ["halluc_task", "halluc_method"], {
    "acc": "quality.halluc_acc", "acc_lo": "quality.halluc_acc_ci95_low", "acc_hi": "quality.halluc_acc_ci95_high",
    "AUC": "quality.halluc_auc", "auc_lo": "quality.halluc_auc_ci95_low", "auc_hi": "quality.halluc_auc_ci95_high"})


def run(p: HallucinationParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails.halluc import data, evaluate, metrics

    cands = data.candidates(p.halluc_task, 2 * p.halluc_items, p.seed)
    with evaluate.server(threads=p.threads) as srv:
        scores = evaluate.score(p.halluc_task, p.halluc_method, cands, srv, progress=False)
    m = metrics.summarize(cands, scores, seed=p.seed)
    res.add("quality.halluc_acc", m["acc"])
    res.add("quality.halluc_auc", m["auc"])
    for k in ("acc_ci95_low", "acc_ci95_high", "auc_ci95_low", "auc_ci95_high"):
        res.add(f"quality.halluc_{k}", m[k])
    res.tables["halluc_scores"] = cands.drop(columns=["context"]).assign(score=scores)
    res.tags["guardrails.halluc_threshold"] = f"{m['threshold']:.6g}"
    if p.halluc_method in evaluate.LLM_METHODS:
        res.tags["guardrails.halluc_model"] = evaluate.MODEL
