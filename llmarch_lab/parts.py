"""Labs made of parts: one params model per part, a discriminated union on `part`.

A multi-part lab (guardrails: pii, injection, ...) declares one model per part, each a
`LabParams` with `part: Literal["<name>"]` and only the fields that part reads, in the part's
own file. The notebook and the suites still see one flat model (one parameters cell; `llmarch-lab
list` shows every field), built by inheriting every part:

    class PiiParams(GuardrailsPart):
        part: Literal["pii"] = "pii"
        pii_threshold: Optional[float] = None
    ...
    class GuardrailsParams(PartsParams, PiiParams, InjectionParams, ...):
        lab = "guardrails"
        parts = {"pii": PiiParams, "injection": InjectionParams, ...}
        part: Literal["pii", "injection", ...] = "injection"

    p = GuardrailsParams(part="pii", detector="rules")
    # LabError at the suite: "detector: not a parameter of part 'pii' (its parameters: ...)"
    GuardrailsParams(part="pii", pii_threshold=0.4).part_params()   # PiiParams(part='pii', ...)

A field set for another part is an error naming the part; `part_params()` validates the chosen
part's fields through the discriminated union (pydantic `Field(discriminator="part")`), so a
part's code only ever sees its own model. In a notebook every part's defaults are in the
parameters cell; `from_namespace` takes the chosen part's fields only.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, ClassVar, Union

from pydantic import Field, TypeAdapter, model_validator

from llmarch_lab.config import LabParams, validate_params


class PartsParams(LabParams):
    """Base of a multi-part lab's flat params model (list it first among the bases)."""

    parts: ClassVar[dict[str, type[LabParams]]] = {}

    @model_validator(mode="after")
    def _only_this_parts_fields(self):
        own = self.parts[self.part].model_fields
        foreign = sorted(k for k in self.model_fields_set if k not in own)
        if foreign:
            owners = [p for p, m in self.parts.items() if foreign[0] in m.model_fields]
            raise ValueError(f"{foreign[0]}: not a parameter of part {self.part!r} (it belongs to part "
                             f"{', '.join(repr(o) for o in owners)}; part {self.part!r} takes: "
                             f"{', '.join(k for k in own if k != 'part')})")
        return self

    @classmethod
    @functools.cache
    def union(cls) -> TypeAdapter:
        """The parts as a pydantic discriminated union on `part`."""
        return TypeAdapter(Annotated[Union[tuple(cls.parts.values())], Field(discriminator="part")])

    def part_params(self) -> LabParams:
        """This run's own part model (only the chosen part's fields)."""
        own = self.parts[self.part].model_fields
        return self.union().validate_python({k: getattr(self, k) for k in own})

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any], where: str = "parameters cell"):
        part = namespace.get("part", cls.model_fields["part"].default)
        own = cls.parts[part].model_fields if part in cls.parts else {"part": None}
        return validate_params(cls, {k: namespace[k] for k in own if k in namespace}, where)
