"""The guard's config: a check (name, stage, scorer, threshold, action, optional escalation band) and
the GuardConfig holding them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmarch_lab import LabError

Stage = Literal["input", "output"]
Action = Literal["allow", "redact", "block", "escalate"]
SEVERITY = {"allow": 0, "redact": 1, "escalate": 2, "block": 3}


class CheckSpec(BaseModel):
    """One check. `scorer`: a built-in name (see BUILTIN_SCORERS) or "module:attr" naming a
    factory called with `options` (or a plain scorer when options is empty and it is not a
    factory); "" = the scorer is passed to Guard(scorers={name: ...}) by the caller.

    Two thresholds: with `escalate_at` set, a score in [escalate_at, threshold) escalates to a
    human (action "escalate", whatever `action` is) and a score >= threshold takes `action`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Unique check name (scores, audit, escalations use it).")
    stage: Stage = Field(description="input: before the LLM; output: on the LLM's answer.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Tripped when score >= threshold.")
    action: Action = Field("block", description="What a tripped check does.")
    escalate_at: float | None = Field(None, description="Lower threshold in [0, threshold): a score in "
                                      "[escalate_at, threshold) escalates; None = no escalation band.")
    scorer: str = Field("", description="Built-in scorer name or 'module:attr'; '' = given to Guard.")
    options: dict = Field(default_factory=dict, description="Keyword arguments for the scorer factory.")
    enabled: bool = Field(True, description="False: the check is skipped (kept in the config).")

    @model_validator(mode="after")
    def _band(self):
        e = self.escalate_at
        if e is None:
            return self
        # LabError, not ValueError: pydantic passes it through as one line naming the check
        if isinstance(e, bool) or not 0.0 <= e <= 1.0:  # NaN fails the comparison too
            raise LabError(f"check {self.name}: escalate_at {e!r} is outside [0, 1]")
        if not e < self.threshold:
            raise LabError(f"check {self.name}: escalate_at {e} must be below its threshold {self.threshold} "
                           "(the band [escalate_at, threshold) escalates, >= threshold takes the action)")
        return self


class GuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[CheckSpec] = Field(default_factory=list, description="Checks, in the order they run.")
    # A conventional refusal, so that refusal detectors (garak's mitigation.MitigationBypass, say)
    # count a blocked answer as the refusal it is.
    block_message: str = Field("I'm sorry, but I can't help with that request.", description="Reply when blocked.")
    hold_message: str = Field("Your request has been passed to a human reviewer.",
                              description="Reply when escalated with on_escalate=hold.")
    on_escalate: Literal["hold", "pass"] = Field("hold", description="hold: reply hold_message; pass: answer, queue for review.")
    on_error: Action = Field("block", description="Action of a check whose scorer raised (fail closed).")
    stop_on_block: bool = Field(True, description="Skip a stage's remaining checks once one blocks.")
    redact_placeholder: str = Field("<{label}>", description="Replacement for an entity span ({label}).")

    @model_validator(mode="after")
    def _unique(self):
        names = [c.name for c in self.checks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"check names must be unique; repeated: {dup}")
        return self
