"""Part `outside`: one detector on the outside validation set of its check (data/guard_outside):
per-source recall / benign FPR with Wilson intervals, pooled P / R / F1 per group, at the
threshold the detector ships with and at the one the dev sources choose for the FPR budget. Test
sources are never used for a choice (outside/evaluate.py says how the trained detectors are
scored: leave-one-source-out)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab.labs.guardrails.parts.base import INJECTION_DETECTORS, TOXICITY_DETECTORS, GuardrailsPart
from llmarch_lab.results import Result


class OutsideParams(GuardrailsPart):
    part: Literal["outside"] = "outside"
    outside_check: Literal["injection", "toxicity"] = Field("injection", description="Which outside set (and detector family).")
    outside_detector: str = Field("union-lr", description="Detector name of that check (injection.DETECTORS / toxicity.DETECTORS).")
    nano_per_source: int = Field(40, ge=5, le=1000, description="Texts per source for slow detectors (nanoguard and what contains it).")
    fpr_budget: float = Field(0.04, gt=0, lt=0.5, description="Benign FPR allowed on every dev source when the dev threshold is chosen.")

    @model_validator(mode="after")
    def _detector_of_its_check(self):
        valid = INJECTION_DETECTORS if self.outside_check == "injection" else TOXICITY_DETECTORS
        if self.outside_detector not in valid:
            raise ValueError(f"outside_detector {self.outside_detector!r} is not a {self.outside_check} detector "
                             f"(valid: {', '.join(valid)})")
        return self


REPORT = ("guardrails outside: outside sources grouped dev / test by source; numbers at the detector's shipped threshold, "
          "recal = at the threshold the dev sources choose",
          ["outside_check", "outside_detector"], {
              "dev_F1": "quality.outside_dev_f1", "dev_worst_FPR": "errors.outside_dev_worst_fpr",
              "test_P": "quality.outside_test_precision", "test_R": "quality.outside_test_recall",
              "test_F1": "quality.outside_test_f1", "test_FPR": "errors.outside_test_benign_fpr",
              "test_worst_FPR": "errors.outside_test_worst_fpr", "test_min_R": "quality.outside_test_min_recall",
              "unseen_test_F1": "quality.outside_unseen_test_f1", "unseen_test_worst_FPR": "errors.outside_unseen_test_worst_fpr",
              "recal_test_F1": "quality.outside_recal_test_f1", "recal_test_worst_FPR": "errors.outside_recal_test_worst_fpr",
              "threshold": "count.outside_threshold"})


def _log(res: Result, summ, prefix: str) -> None:
    for _, r in summ.iterrows():
        g, side = r["group"], r.get("side", "all")
        if side != "all":  # toxicity: inputs and outputs apart, at the same threshold
            res.add(f"quality.{prefix}_{g}_{side}_f1", r["F1"])
            res.add(f"errors.{prefix}_{g}_{side}_benign_fpr", r["benign_FPR"])
            continue
        res.add(f"quality.{prefix}_{g}_precision", r["P"])
        res.add(f"quality.{prefix}_{g}_recall", r["R"])
        res.add(f"quality.{prefix}_{g}_f1", r["F1"])
        res.add(f"errors.{prefix}_{g}_benign_fpr", r["benign_FPR"])
        res.add(f"errors.{prefix}_{g}_worst_fpr", r["worst_source_FPR"])
        if r["min_source_recall"] == r["min_source_recall"]:  # not NaN
            res.add(f"quality.{prefix}_{g}_min_recall", r["min_source_recall"])


def run(p: OutsideParams, res: Result) -> None:
    from llmarch_lab import LabError
    from llmarch_lab.labs.guardrails import plots
    from llmarch_lab.labs.guardrails.outside import study

    if p.outside_check == "injection":
        out = study.injection([p.outside_detector], nano_per_source=p.nano_per_source, budget=p.fpr_budget, progress=False)
    else:
        out = study.toxicity([p.outside_detector], budget=p.fpr_budget, progress=False)
    summ, per = out["summary"], out["per_source"]
    if summ.empty:
        raise LabError(f"outside: no rows scored for {p.outside_detector}")
    main = summ[summ.detector == p.outside_detector]
    shipped = main[main.threshold_rule == "as shipped"]
    _log(res, shipped, "outside")
    _log(res, main[main.threshold_rule != "as shipped"], "outside_recal")
    unseen = summ[(summ.detector != p.outside_detector) & (summ.threshold_rule == "as shipped")]
    if len(unseen):
        _log(res, unseen, "outside_unseen")
    res.add("count.outside_threshold", float(shipped.threshold.iloc[0]))
    res.tags.update({"guardrails.outside_check": p.outside_check, "guardrails.detector": p.outside_detector})
    res.tables["outside_summary"] = summ
    res.tables["outside_per_source"] = per
    res.figures["outside_per_source"] = plots.per_source(
        per[(per.detector == p.outside_detector) & (per.threshold_rule == "as shipped")], p.outside_detector)
