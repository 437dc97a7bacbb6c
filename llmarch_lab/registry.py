"""The labs, by name, as lazy "module:object" strings: nothing heavy is imported until asked.

    from llmarch_lab import registry
    registry.names()                          # ('quickstart', 'quantization', ...)
    registry.params_class("rag")              # RagParams (imports llmarch_lab.labs.rag.lab)
    registry.report("quantization", "mysuite")  # the lab's own suite table (common.report.Report)

The runner, the CLI and `llmarch-lab report` reach labs only through this table (an
import-linter contract forbids core modules to import llmarch_lab.labs). A notebook names its
lab in its metadata: {"llmarch_lab": {"lab": "rag"}}.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from llmarch_lab import LabError


@dataclass(frozen=True)
class LabEntry:
    name: str
    params: str  # "module:Class", the LabParams subclass
    run: str  # "module:function", params -> Result
    report: str  # "module:function", suite name -> common.report.Report
    notebook: str  # the notebook in notebooks/ that runs it


def _entry(name: str, notebook: str) -> LabEntry:
    mod = f"llmarch_lab.labs.{name}"
    cls = {"quickstart": "QuickstartParams", "quantization": "QuantParams", "finetune": "FinetuneParams",
           "rag": "RagParams", "serving": "ServingParams"}[name]
    return LabEntry(name, f"{mod}.lab:{cls}", f"{mod}.lab:run", f"{mod}.report:report", notebook)


LABS: dict[str, LabEntry] = {e.name: e for e in (
    _entry("quickstart", "00_quickstart"),
    _entry("quantization", "10_quantization"),
    _entry("finetune", "20_finetune"),
    _entry("rag", "30_rag"),
    _entry("serving", "40_serving"),
)}


def names() -> tuple[str, ...]:
    return tuple(LABS)


def get(name: str) -> LabEntry:
    try:
        return LABS[name]
    except KeyError:
        raise LabError(f"unknown lab {name!r} (valid: {', '.join(LABS)})") from None


def load(ref: str, where: str = "registry"):
    """Import a "module:object" string; a LabError naming it when that fails."""
    module_name, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise LabError(f"{where}: cannot import {ref!r} ({e})") from None


def params_class(name: str):
    return load(get(name).params, f"lab {name}")


def run_function(name: str):
    return load(get(name).run, f"lab {name}")


def report(name: str, suite: str):
    """The lab's own table (and plots) of a suite's finished runs of this lab."""
    return load(get(name).report, f"lab {name}")(suite)
