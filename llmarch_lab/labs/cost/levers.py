"""The cost plan's levers: QuantVariant (a measured quantized model), Levers (one plan: which
levers are on; Levers() is the baseline) and the one-lever plans route, cache, quantize, batch, combine.
The rules each lever follows are in plan.py's docstring."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from llmarch_lab import LabError


@dataclass(frozen=True)
class QuantVariant:
    """A quantized large model as the quantization lab measured it."""

    name: str
    speed_ratio: float  # quantized / unquantized decode tok/s
    prefill_speed_ratio: float | None = None  # quantized / unquantized prefill tok/s (None: speed_ratio)
    accuracy_ratio: float | None = None  # quantized / unquantized accuracy on the task
    correct_column: str | None = None  # per-request correctness of the quantized model in the trace
    ppl_delta_pct: float | None = None  # for the record (not a quality rule, see the module docstring)
    source: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise LabError(f"quantize: variant name {self.name!r} must be a plain name (letters, digits, _ . -)")
        for k in ("speed_ratio", "prefill_speed_ratio"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise LabError(f"quantize {self.name}: {k} must be > 0, got {v!r}")
        if self.accuracy_ratio is not None and not self.accuracy_ratio >= 0:
            raise LabError(f"quantize {self.name}: accuracy_ratio must be >= 0, got {self.accuracy_ratio!r}")
        if self.accuracy_ratio is None and self.correct_column is None:
            raise LabError(f"quantize {self.name}: give accuracy_ratio (measured accuracy quantized / unquantized) "
                           "or correct_column (its per-request correctness); a perplexity delta alone does not "
                           "give a quality change")


@dataclass(frozen=True)
class Levers:
    """One plan: which levers are on. Levers() is the baseline."""

    route: float | None = None  # router threshold; None = always large
    cache: str | None = None  # trace column with cache outcomes; None = no cache
    quantize: QuantVariant | None = field(default=None)
    batch: bool = False

    def names(self) -> list[str]:
        out = []
        if self.route is not None:
            out.append(f"route@{self.route:g}")
        if self.cache is not None:
            out.append("cache" if self.cache == "cache_outcome" else f"cache[{self.cache}]")
        if self.quantize is not None:
            out.append(f"quantize[{self.quantize.name}]")
        if self.batch:
            out.append("batch")
        return out

    def label(self) -> str:
        return " + ".join(self.names()) or "baseline"

    def slug(self) -> str:
        """A metric-name piece: route_0_5, cache, quantize_q4_k_m, batch, joined by '__'."""
        return "__".join(re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_") for n in self.names()) or "baseline"


BASELINE = Levers()


def route(threshold: float) -> Levers:
    return Levers(route=float(threshold))


def cache(on: bool = True, column: str = "cache_outcome") -> Levers:
    return Levers(cache=column if on else None)


def quantize(variant: QuantVariant | None) -> Levers:
    return Levers(quantize=variant)


def batch(on: bool = True) -> Levers:
    return Levers(batch=bool(on))


def combine(*levers: Levers) -> Levers:
    """The union of several plans' levers (a later one wins where two set the same lever)."""
    out = BASELINE
    for lv in levers:
        out = replace(out, **{k: getattr(lv, k) for k in ("route", "cache", "quantize", "batch")
                              if getattr(lv, k) not in (None, False)})
    return out
