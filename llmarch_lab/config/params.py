"""Parameters models: LabParams (unknown keys are errors), the shared field mixins, validation."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.common.yamlmodel import format_validation_error, line_for


class LabParams(BaseModel):
    """Base of every notebook's parameters model: unknown keys are rejected, defaults validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    lab: ClassVar[str] = "base"  # results-schema tag `lab`
    key_metrics: ClassVar[tuple[str, ...]] = ()  # shown in the suite summary table

    seed: int = Field(0, description="Random seed for sampling, splits and generation.")

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any], where: str = "parameters cell"):
        """Build the model from a notebook's globals (the values the parameters cell assigned)."""
        values = {k: namespace[k] for k in cls.model_fields if k in namespace}
        return validate_params(cls, values, where)


# ------------------------------------------------------------------ shared parameter fields
# One meaning of model, embedder, device, dtype and endpoint fields in every lab: a lab declares
# `device: Device = "cpu"` (or inherits a mixin) instead of its own str with its own help text.

ModelSpec = Annotated[str, Field(min_length=1, description="LLM spec: alias, Hugging Face id or local path.")]
EmbedderSpec = Annotated[str, Field(min_length=1, description="sentence-transformers spec: alias, Hugging Face id or local path.")]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$",
                              description="cpu, cuda, cuda:N, mps or auto (cuda when available).")]
Dtype = Annotated[Literal["auto", "float32", "bfloat16", "float16"],
                  Field(description="Weights / compute dtype: float32, bfloat16, float16 or auto (bf16 on CUDA, else fp32).")]


class LLMFields(LabParams):
    """Mixin: a local causal LM (model, device, dtype)."""

    model: ModelSpec = models.SMOLLM2
    device: Device = "cpu"
    dtype: Dtype = "float32"


class EmbedderFields(LabParams):
    """Mixin: a local sentence embedder (embedder, device)."""

    embedder: EmbedderSpec = models.MINILM
    device: Device = "cpu"


class EndpointFields(LabParams):
    """Mixin: an OpenAI-compatible endpoint (llm.endpoint.Endpoint); the key stays in the environment."""

    base_url: str = Field("", description="OpenAI-compatible base URL ending in /v1, e.g. http://gpu-box:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$", description="Environment variable holding the API key (the key itself is never a parameter, never logged).")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// URL (an OpenAI-compatible base URL ending in /v1)")
        return v


def validate_params(cls: type[LabParams], values: dict[str, Any], where: str,
                    lines: dict | None = None, prefix: tuple = (), notes: list[str] | None = None) -> LabParams:
    """Validate `values` against `cls`; a LabError of one line naming file:line: field.

    Stricter than pydantic's lax mode where it would silently change a value: a bool is never an
    int or a float (YAML `true` is not 1), and a whole float for an int field (8.0) is taken as
    the int, with a note appended to `notes` so the CLI can say so."""
    def at(k):
        line = line_for(lines or {}, prefix + (k,))
        return f"{where}:{line}" if line else where

    for k, v in values.items():
        f = cls.model_fields.get(k)
        if f is None:
            continue
        kinds = _scalar_kinds(f.annotation)
        for item in (v if isinstance(v, list) and list in kinds else [v]):
            if isinstance(item, bool) and bool not in kinds and kinds & {int, float}:
                raise LabError(f"{at(k)}: {k}: {item!r} is a boolean; this parameter is a number")
            if (isinstance(item, float) and int in kinds and float not in kinds and item.is_integer()
                    and notes is not None):
                notes.append(f"{at(k)}: {k}: {item!r} taken as the integer {int(item)}")
    try:
        return cls(**values)
    except ValidationError as err:
        msg = format_validation_error(err, where, lines, prefix, fields=cls.model_fields)
        if "unknown parameter" in msg:
            msg += f" (valid: {', '.join(cls.model_fields)})"
        raise LabError(msg) from None


def _scalar_kinds(annotation) -> set:
    """The plain types an annotation admits: int | None -> {int, NoneType}; list[int] -> {list, int}."""
    from typing import Union, get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return set().union(*(_scalar_kinds(a) for a in get_args(annotation)))
    if origin in (list, tuple, set):
        return {list}.union(*(_scalar_kinds(a) for a in get_args(annotation) if a is not Ellipsis))
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    return {annotation} if isinstance(annotation, type) else set()
