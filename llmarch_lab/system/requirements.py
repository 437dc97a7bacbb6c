"""A system's requirements (experiments/system/*.yaml), validated like suites: one line per problem
naming the file, line and field.

    req = requirements.load("experiments/system/support_assistant.yaml")
    req.workload.peak_rps, req.slos.ttft_ms_p99, req.quality[0].min, req.budget_usd_month

The file states what the architect needs (workload, latency SLOs, quality floors, mandatory
guards, budget) and what machines cost (the hardware catalogue, each price with its source and
date); the chooser (system/chooser.py) builds candidates from the runs the labs measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmarch_lab import LabError, schema
from llmarch_lab.common.yamlmodel import load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Strict):
    peak_rps: float = Field(gt=0, description="Peak requests per second the system must serve within its SLOs.")
    mean_rps: float = Field(gt=0, description="Mean requests per second (the monthly token volume and $/1M tokens).")
    prompt_tokens: int = Field(ge=1, description="Mean prompt tokens per request.")
    output_tokens: int = Field(ge=1, description="Mean output tokens per request.")
    # How far the serving runs' workload may differ from this one before the chooser flags it.
    tolerance: float = Field(0.5, ge=0, description="Relative difference of a run's prompt/output tokens that is flagged as a risk.")

    @model_validator(mode="after")
    def _mean_le_peak(self):
        if self.mean_rps > self.peak_rps:
            raise ValueError(f"mean_rps: {self.mean_rps:g} is above peak_rps ({self.peak_rps:g})")
        return self


class SLOs(_Strict):
    ttft_ms_p99: float | None = Field(None, gt=0, description="Time to first token, 99th percentile, at most (ms).")
    ttft_ms_p50: float | None = Field(None, gt=0, description="Time to first token, median, at most (ms).")
    tpot_ms_p50: float | None = Field(None, gt=0, description="Time per output token, median, at most (ms).")
    tpot_ms_p99: float | None = Field(None, gt=0, description="Time per output token, 99th percentile, at most (ms).")
    e2e_ms_p99: float | None = Field(None, gt=0, description="Whole request, 99th percentile, at most (ms).")
    error_rate: float = Field(0.01, ge=0, le=1, description="Share of failed requests at most.")

    def latency_items(self) -> dict[str, float]:
        """{'ttft_ms_p99': 1000, ...}: the latency SLOs that are set."""
        return {k: v for k, v in self.model_dump().items() if k != "error_rate" and v is not None}


class Source(_Strict):
    """Where runs measured a floor's metric: runs of `lab` (and `params`) whose `metric` is the
    value, for the model named by param `model_param` or the guard named by `guard_param`."""

    lab: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    params: dict[str, str] = Field(default_factory=dict, description="Run params that must match (as strings).")
    model_param: str | None = None
    guard_param: str | None = None

    @model_validator(mode="after")
    def _metric_declared(self):
        try:
            schema.check(self.metric)
        except LabError as e:  # a ValueError, so that the message carries the file's line
            raise ValueError(f"metric: {e}") from None
        return self


# Tasks the chooser knows how to find without spelling out sources. A floor names `task` (one of
# these) or gives its own `sources`.
TASKS: dict[str, dict] = {
    "pubmedqa_accuracy": {"of": "model", "sources": [
        {"lab": "cost", "metric": "quality.small_pubmedqa_accuracy", "model_param": "small_model"},
        {"lab": "cost", "metric": "quality.large_pubmedqa_accuracy", "model_param": "large_model"},
        {"lab": "finetune", "metric": "quality.accuracy", "model_param": "model"}]},
    "gsm8k_accuracy": {"of": "model", "sources": [
        {"lab": "cost", "metric": "quality.small_gsm8k_accuracy", "model_param": "small_model"},
        {"lab": "cost", "metric": "quality.large_gsm8k_accuracy", "model_param": "large_model"}]},
    "injection_f1": {"of": "guard", "sources": [
        {"lab": "guardrails", "metric": "quality.injection_f1", "params": {"part": "injection"}, "guard_param": "detector"}]},
    "injection_recall": {"of": "guard", "sources": [
        {"lab": "guardrails", "metric": "quality.injection_recall", "params": {"part": "injection"}, "guard_param": "detector"}]},
    "cranfield_ndcg_at_10": {"of": "any", "sources": [
        {"lab": "rag", "metric": "quality.ndcg_at_10", "params": {"corpus": "cranfield"}}]},
    "pubmedqa_ndcg_at_10": {"of": "any", "sources": [
        {"lab": "rag", "metric": "quality.ndcg_at_10", "params": {"corpus": "pubmedqa"}}]},
}


class Floor(_Strict):
    name: str = Field(min_length=1, description="What the floor is, as the report names it.")
    task: str | None = Field(None, description=f"A known task ({', '.join(TASKS)}) or None with sources.")
    of: Literal["model", "guard", "any"] | None = Field(None, description="What the metric belongs to: the served model, the guard, or any component (e.g. retrieval).")
    sources: list[Source] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r} (known: {', '.join(TASKS)}; or give sources)")
        if self.task is None and not self.sources:
            raise ValueError("sources: give a task or at least one source (lab, metric)")
        if (self.min is None) == (self.max is None):
            raise ValueError("min: give exactly one of min (higher is better) or max (lower is better)")
        for s in self.resolved_sources():
            d = schema.direction(s.metric)
            if self.min is not None and d == "lower":
                raise ValueError(f"min: {s.metric} is lower-is-better; use max")
            if self.max is not None and d == "higher":
                raise ValueError(f"max: {s.metric} is higher-is-better; use min")
        return self

    def resolved_sources(self) -> list[Source]:
        return list(self.sources) or [Source(**s) for s in TASKS[self.task]["sources"]]

    def belongs_to(self) -> str:
        return self.of or (TASKS[self.task]["of"] if self.task else "any")

    def bound(self) -> float:
        return self.min if self.min is not None else self.max

    def ok(self, value: float | None) -> bool:
        if value is None or value != value:
            return False
        return value >= self.min if self.min is not None else value <= self.max

    def shortfall(self, value: float | None) -> str:
        if value is None or value != value:
            return f"{self.name}: not measured"
        op = ">=" if self.min is not None else "<="
        return f"{self.name} {value:.3g}, needs {op} {self.bound():g} (by {abs(value - self.bound()):.3g})"


class Safety(_Strict):
    guards: list[Literal["injection"]] = Field(default_factory=list, description="Mandatory guards.")
    pii_config: str = Field("no_op/tuned", description="PII configuration of the guard stack in the verification and the bundle.")


class Hardware(_Strict):
    name: str = Field(min_length=1)
    usd_per_hour: float = Field(gt=0)
    kind: Literal["cpu", "gpu"]
    measured_here: bool = Field(False, description="The serving runs in the store were measured on this machine type.")
    source: str = Field(min_length=1, description="Where the price comes from (URL or 'assumed, not verified').")
    date: str = Field(min_length=1, description="The date the source states (or when it was read).")

    @field_validator("date", mode="before")
    @classmethod
    def _date_text(cls, v):
        return v.isoformat() if hasattr(v, "isoformat") else v  # YAML reads 2026-06-17 as a date
    cpu: str = Field("2", description="Kubernetes CPU request per replica.")
    memory: str = Field("4Gi", description="Kubernetes memory request per replica.")
    gpus: int = Field(0, ge=0)


class Sizing(_Strict):
    headroom: float = Field(0.25, ge=0, le=10, description="Capacity kept free at peak: replicas = ceil(peak * (1 + headroom) / per-replica goodput).")
    max_replicas: int = Field(64, ge=1, le=10_000)
    hours_per_month: float = Field(730.0, gt=0)


class Verify(_Strict):
    enabled: bool = True
    requests: int = Field(24, ge=4, le=10_000, description="Requests sent in the end-to-end check.")
    max_seconds: float = Field(180.0, gt=0)
    guard: bool = Field(True, description="Put the chosen guard in front of the engine (the guardrails lab's LiteLLM gateway).")


class Requirements(_Strict):
    system: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the system (the MLflow experiment is system-<name>).")
    description: str = ""
    experiments: list[str] | None = Field(None, description="MLflow experiments whose runs are the components (None = all).")
    workload: Workload
    slos: SLOs
    quality: list[Floor] = Field(default_factory=list)
    safety: Safety = Safety()
    budget_usd_month: float = Field(gt=0)
    hardware: list[Hardware] = Field(min_length=1)
    sizing: Sizing = Sizing()
    verify: Verify = Verify()
    path: str = ""  # set by load(): the file, for messages

    @model_validator(mode="after")
    def _unique_hardware(self):
        names = [h.name for h in self.hardware]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"hardware: duplicate name {dup[0]!r}")
        if not any(h.measured_here for h in self.hardware):
            raise ValueError("hardware: no entry has measured_here: true (the machine the serving runs were measured on)")
        return self


def load(path: str | Path) -> Requirements:
    """Read and validate a requirements file; a LabError naming file:line: field."""
    return load_model(path, Requirements, "requirements", path=str(path))


def files() -> list[Path]:
    from llmarch_lab import paths

    return sorted((paths.home() / "experiments" / "system").glob("*.yaml"))
