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


def _lab(name: str, params_class: str, notebook: str) -> LabEntry:
    """The standard layout: llmarch_lab/labs/<name>/lab.py (params, run) and report.py (report)."""
    mod = f"llmarch_lab.labs.{name}"
    return LabEntry(name, f"{mod}.lab:{params_class}", f"{mod}.lab:run", f"{mod}.report:report", notebook)


LABS: dict[str, LabEntry] = {e.name: e for e in (
    _lab("quickstart", "QuickstartParams", "00_quickstart"),
    _lab("quantization", "QuantParams", "10_quantization"),
    _lab("finetune", "FinetuneParams", "20_finetune"),
    _lab("rag", "RagParams", "30_rag"),
    LabEntry("rag_scenario", "llmarch_lab.labs.rag.corpus.scenario:ScenarioParams",  # the 500k scenario (issue 32)
             "llmarch_lab.labs.rag.corpus.scenario:run", "llmarch_lab.labs.rag.corpus.scenario:report", "31_rag_500k"),
    _lab("serving", "ServingParams", "40_serving"),
    _lab("guardrails", "GuardrailsParams", "50_guardrails"),
    _lab("cost", "CostParams", "60_cost"),
    # Not under labs/: the chooser reads every lab's runs and starts their components (system/).
    LabEntry("system", "llmarch_lab.system.lab:SystemParams", "llmarch_lab.system.lab:run",
             "llmarch_lab.system.lab:report", "90_system"),
)}


# Lab commands the CLI offers (`llmarch-lab guard scan ...`), as lazy strings like the labs.
COMMANDS: dict[str, str] = {
    "guard scan": "llmarch_lab.labs.guardrails.scan:scan_file",
    "guard verify": "llmarch_lab.labs.guardrails.audit_verify:verify",
    "guard repair": "llmarch_lab.labs.guardrails.audit_verify:repair_log",
    "cache eval": "llmarch_lab.labs.cost.cache:eval_pairs_file",
    "system report": "llmarch_lab.system.report:build",
    "system choose": "llmarch_lab.system.report:choose_only",
    "system drill": "llmarch_lab.system.ops.report:run_and_log",
    "system key": "llmarch_lab.labs.guardrails.gateway.keys:add_key",
    "system quality": "llmarch_lab.system.ops.stack_quality:measure_choice",
    "system drill config": "llmarch_lab.system.ops.drill:DrillConfig",
    "system requirements": "llmarch_lab.system.requirements:load",  # checked before a report writes anything
}


# What system/ uses of the labs (an import-linter contract forbids it to import llmarch_lab.labs):
# the guarded gateway and its guard stack, the serving lab's workload, limits and metrics, and the
# cost lab's PubMedQA items and scoring (quality through the running stack).
SERVICES: dict[str, str] = {
    "guardrails.launch_gateway": "llmarch_lab.labs.guardrails.gateway:launch",
    "guardrails.litellm_config": "llmarch_lab.labs.guardrails.gateway:litellm_config",
    "guardrails.write_gateway_keys": "llmarch_lab.labs.guardrails.gateway.keys:write_keys",
    "guardrails.keys_file": "llmarch_lab.labs.guardrails.gateway.keys:__file__",
    "guardrails.hook_file": "llmarch_lab.labs.guardrails.gateway.hook:__file__",
    "guardrails.default_stack": "llmarch_lab.labs.guardrails.stack:default_config",
    "serving.params": "llmarch_lab.labs.serving.lab:ServingParams",
    "serving.tokenizer_for": "llmarch_lab.labs.serving.lab:tokenizer_for",
    "serving.fixed_output_body": "llmarch_lab.labs.serving.lab:fixed_output_body",
    "serving.workload": "llmarch_lab.labs.serving.workload:build",
    "serving.cycle": "llmarch_lab.labs.serving.workload:cycle",
    "serving.summarize": "llmarch_lab.labs.serving.metrics:summarize",
    "cost.sample": "llmarch_lab.labs.cost.outcomes:sample",
    "cost.answer": "llmarch_lab.labs.cost.outcomes:answer",
}


def command(name: str):
    return load(COMMANDS[name], f"command {name!r}")


def service(name: str):
    """A lab's function (or value) that system/ uses, by its SERVICES name."""
    try:
        ref = SERVICES[name]
    except KeyError:
        raise LabError(f"unknown lab service {name!r} (valid: {', '.join(SERVICES)})") from None
    return load(ref, f"service {name!r}")


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


def reports(name: str, suite: str) -> list:
    """report() as a list: a lab with several parts (guardrails) gives one Report per part."""
    out = report(name, suite)
    return list(out) if isinstance(out, (list, tuple)) else [out]
