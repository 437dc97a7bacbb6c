"""Part `bias`: BBQ, CrowS-Pairs and StereoSet of one served LLM (SmolLM2-135M, Qwen2.5-Coder 0.5B /
1.5B) by exact log-likelihood, with 95% bootstrap intervals, and the BBQ debiasing-prefix mitigation
(wording chosen on a dev half, deltas measured on the held-out half). Units as the papers: % for
accuracies, shares, SS, LMS and ICAT; BBQ bias scores in [-100, 100]. See labs/guardrails/bias/."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from llmarch_lab.labs.guardrails.parts.base import GuardrailsPart
from llmarch_lab.results import Result


class BiasParams(GuardrailsPart):
    part: Literal["bias"] = "bias"
    bias_model: Literal["smollm2", "qwen0.5b", "qwen1.5b"] = Field(
        "smollm2", description="Model whose bias is measured (qwen* need `make model-qwen`).")
    bias_items: int = Field(200, ge=0, le=5000, description="Items per set (0 = all; BBQ: its 320 annotated items at most).")


METRICS = {
    "bbq.acc_ambig": "quality.bbq_acc_ambig", "bbq.acc_disambig": "quality.bbq_acc_disambig",
    "bbq.bias_ambig": "quality.bbq_bias_ambig", "bbq.bias_disambig": "quality.bbq_bias_disambig",
    "crows.stereo_pref": "quality.crows_stereo_pref", "stereoset.ss": "quality.stereoset_ss",
    "stereoset.lms": "quality.stereoset_lms", "stereoset.icat": "quality.stereoset_icat",
}
MITIGATED = ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")

REPORT = ("guardrails bias: BBQ, CrowS-Pairs, StereoSet", ["bias_model", "bias_items"], {
    "acc_amb": "quality.bbq_acc_ambig", "acc_dis": "quality.bbq_acc_disambig",
    "bias_amb": "quality.bbq_bias_ambig", "bias_dis": "quality.bbq_bias_disambig",
    "crows": "quality.crows_stereo_pref", "SS": "quality.stereoset_ss", "LMS": "quality.stereoset_lms",
    "ICAT": "quality.stereoset_icat", "d_bias_amb": "quality.bbq_mitigation_delta_bias_ambig",
    "d_acc_dis": "quality.bbq_mitigation_delta_acc_disambig"})


def _add(res: Result, name: str, value: float, lo: float, hi: float) -> None:
    """The metric and its interval ends (`_lo`, `_hi`); an undefined value (NaN) is left out."""
    for suffix, v in (("", value), ("_lo", lo), ("_hi", hi)):
        if v is not None and math.isfinite(v):
            res.add(name + suffix, v)


def run(p: BiasParams, res: Result) -> None:
    import pandas as pd

    from llmarch_lab.labs.guardrails.bias import run_bias

    rep = run_bias(p.bias_model, p.bias_items, p.seed, progress=False)
    for key, (v, lo, hi) in rep.metric_values().items():
        if key in METRICS:
            _add(res, METRICS[key], v, lo, hi)
    res.tables["bias_metrics"] = pd.DataFrame(rep.rows)
    for name, df in rep.items.items():
        res.tables[f"bias_{name}_items"] = df
    m = rep.mitigation
    if m:
        for k in MITIGATED:
            _add(res, f"quality.bbq_mitigation_delta_{k}", *m["deltas"][k])
        res.tags["guardrails.bias_prefix"] = m["chosen"]
        res.tags["guardrails.bias_split"] = f"dev {m['dev_n']} / test {m['test_n']} BBQ items"
        res.tables["bias_mitigation_dev"] = pd.DataFrame(m["dev"])
        res.tables["bias_mitigation_test"] = pd.DataFrame(m["test"])
    res.tags["guardrails.bias_model"] = rep.model
