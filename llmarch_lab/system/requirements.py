"""A system's requirements (experiments/system/*.yaml), validated like suites: one line per problem
naming the file, line and field.

    req = requirements.load("experiments/system/support_assistant.yaml")
    req.workload.peak_rps, req.slos.ttft_ms_p99, req.quality[0].min, req.budget_usd_month

The file states what the architect needs (workload, latency SLOs, quality floors, mandatory
guards, budget) and what machines cost (the hardware catalogue, each price with its source and
date); the chooser (system/chooser.py) builds candidates from the runs the labs measured.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from llmarch_lab import LabError, schema
from llmarch_lab.common.yamlmodel import load_model

MAX_TEXT = 1000  # characters of any string in the file (a description, a price's source URL)
MAX_NAME = 64
# Names that become part of a path, a report folder or a bundle (hardware, labs, metrics, params).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (MAX_NAME - 1))
# The system name becomes the report folder, the Helm chart's name and the prefix of Kubernetes
# Services ("<system>-gateway-key" is the longest): a DNS-1035 label of at most 63 characters.
SYSTEM_NAME = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")


def _printable(v: str) -> str:
    # pydantic has no "no control characters" constraint; a terminal escape (ESC, C1) in a name
    # or a description would reach the terminal and the report. Tab and newline are text.
    bad = next((c for c in v if unicodedata.category(c) == "Cc" and c not in "\t\n"), None)
    if bad is not None:
        raise ValueError(f"control character {bad!r} at position {v.index(bad)}; use printable text")
    return v


def _safe_name(v: str) -> str:
    if not SAFE_NAME.fullmatch(v):
        raise ValueError(f"must be 1-{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit (it names files, folders and bundle paths)")
    return v


def _system_name(v: str) -> str:
    if not SYSTEM_NAME.fullmatch(v):
        raise ValueError("must be 1-40 lowercase letters, digits or '-', starting with a letter and not ending "
                         "with '-' (it names the report folder, the Helm chart and Kubernetes objects)")
    return v


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_printable)]
Name = Annotated[str, AfterValidator(_safe_name)]
# Kubernetes resource quantities (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/)
CpuQuantity = Annotated[str, Field(pattern=r"^([0-9]+(\.[0-9]{1,3})?|[0-9]+m)$")]
MemoryQuantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")]


class _Strict(BaseModel):
    # strict: a number must be a YAML number ("5" or true is refused; an int for a float is fine);
    # allow_inf_nan=False: every float is finite (.inf, .nan are refused); str_max_length for any
    # string field not typed Text or Name.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              str_max_length=MAX_TEXT)


class Workload(_Strict):
    peak_rps: float = Field(gt=0, description="Peak requests per second the system must serve within its SLOs.")
    mean_rps: float = Field(gt=0, description="Mean requests per second (the monthly token volume and $/1M tokens).")
    prompt_tokens: int = Field(ge=1, le=10_000_000, description="Mean prompt tokens per request.")
    output_tokens: int = Field(ge=1, le=10_000_000, description="Mean output tokens per request.")
    # How far the serving runs' workload may differ from this one before the chooser flags it.
    tolerance: float = Field(0.5, ge=0, le=100, description="Relative difference of a run's prompt/output tokens that is flagged as a risk.")

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

    @model_validator(mode="after")
    def _some_and_ordered(self):
        lat = self.latency_items()
        if not lat:
            names = ", ".join(k for k in type(self).model_fields if k != "error_rate")
            raise ValueError(f"no latency SLO set; give at least one of {names}")
        # p50 <= p95 <= p99 of the same metric: a higher percentile is never the smaller bound.
        by_metric: dict[str, list[tuple[int, str, float]]] = {}
        for k, v in lat.items():
            m = re.fullmatch(r"(.+)_p(\d+)", k)
            if m:
                by_metric.setdefault(m.group(1), []).append((int(m.group(2)), k, v))
        for items in by_metric.values():
            items.sort()
            for (_, lo_k, lo_v), (_, hi_k, hi_v) in zip(items, items[1:]):
                if hi_v < lo_v:
                    raise ValueError(f"{hi_k}: {hi_v:g} is below {lo_k} ({lo_v:g}); a higher percentile "
                                     "cannot have a smaller bound")
        return self

    def latency_items(self) -> dict[str, float]:
        """{'ttft_ms_p99': 1000, ...}: the latency SLOs that are set."""
        return {k: v for k, v in self.model_dump().items() if k != "error_rate" and v is not None}


class Source(_Strict):
    """Where runs measured a floor's metric: runs of `lab` (and `params`) whose `metric` is the
    value, for the model named by param `model_param` or the guard named by `guard_param`."""

    lab: Name
    metric: Name
    params: dict[Name, Text] = Field(default_factory=dict, max_length=50, description="Run params that must match (as strings).")
    model_param: Name | None = None
    guard_param: Name | None = None

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
    "pubmedqa_accuracy": {"of": "model", "sources": [  # the stack's own measurement first (ops/stack_quality.py)
        {"lab": "system", "metric": "quality.stack_pubmedqa_accuracy", "model_param": "model", "guard_param": "guard"},
        {"lab": "cost", "metric": "quality.small_pubmedqa_accuracy", "model_param": "small_model"},
        {"lab": "cost", "metric": "quality.large_pubmedqa_accuracy", "model_param": "large_model"},
        {"lab": "finetune", "metric": "quality.accuracy", "model_param": "model"}]},
    "gsm8k_accuracy": {"of": "model", "sources": [
        {"lab": "cost", "metric": "quality.small_gsm8k_accuracy", "model_param": "small_model"},
        {"lab": "cost", "metric": "quality.large_gsm8k_accuracy", "model_param": "large_model"}]},
    # Injection quality: on the outside test sources first (attacks and benign prompts the guard was
    # not tuned on), else cross-validated on the training file.
    "injection_f1": {"of": "guard", "sources": [
        {"lab": "guardrails", "metric": "quality.outside_test_f1", "params": {"part": "outside", "outside_check": "injection"},
         "guard_param": "outside_detector"},
        {"lab": "guardrails", "metric": "quality.injection_f1", "params": {"part": "injection"}, "guard_param": "detector"}]},
    "injection_recall": {"of": "guard", "sources": [
        {"lab": "guardrails", "metric": "quality.outside_test_recall", "params": {"part": "outside", "outside_check": "injection"},
         "guard_param": "outside_detector"},
        {"lab": "guardrails", "metric": "quality.injection_recall", "params": {"part": "injection"}, "guard_param": "detector"}]},
    "cranfield_ndcg_at_10": {"of": "any", "sources": [
        {"lab": "rag", "metric": "quality.ndcg_at_10", "params": {"corpus": "cranfield"}}]},
    "pubmedqa_ndcg_at_10": {"of": "any", "sources": [
        {"lab": "rag", "metric": "quality.ndcg_at_10", "params": {"corpus": "pubmedqa"}}]},
}


class Floor(_Strict):
    name: Text = Field(min_length=1, max_length=200, description="What the floor is, as the report names it.")
    task: Name | None = Field(None, description=f"A known task ({', '.join(TASKS)}) or None with sources.")
    of: Literal["model", "guard", "any"] | None = Field(None, description="What the metric belongs to: the served model, the guard, or any component (e.g. retrieval).")
    sources: list[Source] = Field(default_factory=list, max_length=20)
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
    guards: list[Literal["injection"]] = Field(default_factory=list, max_length=10, description="Mandatory guards.")
    pii_config: Text = Field("no_op/tuned", description="PII configuration of the guard stack in the verification and the bundle.")


class Hardware(_Strict):
    name: Name
    usd_per_hour: float = Field(gt=0)
    kind: Literal["cpu", "gpu"]
    measured_here: bool = Field(False, description="The serving runs in the store were measured on this machine type.")
    source: Text = Field(min_length=1, description="Where the price comes from (URL or 'assumed, not verified').")
    date: Text = Field(min_length=1, max_length=40, description="The date the source states (or when it was read).")

    @field_validator("date", mode="before")
    @classmethod
    def _date_text(cls, v):
        return v.isoformat() if hasattr(v, "isoformat") else v  # YAML reads 2026-06-17 as a date
    cpu: CpuQuantity = Field("2", description="Kubernetes CPU request per replica.")
    memory: MemoryQuantity = Field("4Gi", description="Kubernetes memory request per replica.")
    gpus: int = Field(0, ge=0, le=64)


class Sizing(_Strict):
    headroom: float = Field(0.25, ge=0, le=10, description="Capacity kept free at peak: replicas = ceil(peak * (1 + headroom) / per-replica goodput).")
    max_replicas: int = Field(64, ge=1, le=10_000)
    hours_per_month: float = Field(730.0, gt=0, le=744, description="Hours billed per month (at most 31 x 24).")


class Verify(_Strict):
    enabled: bool = True
    requests: int = Field(24, ge=4, le=10_000, description="Requests sent in the end-to-end check.")
    max_seconds: float = Field(180.0, gt=0, le=86_400)
    guard: bool = Field(True, description="Put the chosen guard in front of the engine (the guardrails lab's LiteLLM gateway).")
    workload: Literal["synthetic", "pubmedqa"] = Field(
        "synthetic", description="The check's prompts: synthetic WikiText-2 text of exactly prompt_tokens, or real "
                                 "PubMedQA questions with their abstracts cut to about prompt_tokens.")
    calibration_requests: int = Field(
        16, ge=0, le=1000, description="llama-server: requests per concurrency level of the closed-loop sweep run on the "
                                        "engine itself before and after the check (its step cost then), 0 = none.")


class Requirements(_Strict):
    system: Annotated[str, AfterValidator(_system_name)] = Field(description="Name of the system (the MLflow experiment is system-<name>).")
    description: Text = ""
    experiments: list[Text] | None = Field(None, min_length=1, max_length=100, description="MLflow experiments whose runs are the components (None = all).")
    workload: Workload
    slos: SLOs
    quality: list[Floor] = Field(default_factory=list, max_length=50)
    safety: Safety = Safety()
    budget_usd_month: float = Field(gt=0)
    hardware: list[Hardware] = Field(min_length=1, max_length=100)
    sizing: Sizing = Sizing()
    verify: Verify = Verify()
    path: str = Field("", max_length=4096)  # set by load(): the file, for messages

    # A field validator, not a model one: it runs (and is reported) even when another field is bad.
    @field_validator("hardware")
    @classmethod
    def _unique_hardware(cls, hardware):
        names = [h.name for h in hardware]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate name {dup[0]!r}")
        if not any(h.measured_here for h in hardware):
            raise ValueError("no entry has measured_here: true (the machine the serving runs were measured on)")
        return hardware


def load(path: str | Path) -> Requirements:
    """Read and validate a requirements file; a LabError naming file:line: field."""
    return load_model(path, Requirements, "requirements", path=str(path))


def files() -> list[Path]:
    from llmarch_lab import paths

    return sorted((paths.home() / "experiments" / "system").glob("*.yaml"))
