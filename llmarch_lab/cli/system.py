"""`llmarch-lab system report | choose`: the system chooser's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError
from llmarch_lab.cli.base import app, fail

system_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="System chooser: pick a whole system under SLOs and a budget from measured runs.")
app.add_typer(system_app, name="system")

SYSTEM_EXAMPLES = """Examples:

\b
  llmarch-lab system report experiments/system/support_assistant.yaml --out /tmp/support
  llmarch-lab system report experiments/system/quickstart.yaml --no-verify --screenshot
  llmarch-lab system choose experiments/system/support_assistant.yaml
"""


@system_app.command("report", epilog=SYSTEM_EXAMPLES)
def system_report(requirements: Path = typer.Argument(..., metavar="REQUIREMENTS.yaml"),
                  out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Report folder (default mlruns/reports/<system>)."),
                  verify: Optional[bool] = typer.Option(None, "--verify/--no-verify", help="Run the end-to-end check (default: the file's verify.enabled)."),
                  screenshot: bool = typer.Option(False, "--screenshot", help="Also save the first screen as screenshot.png (headless Chromium)."),
                  docs: Optional[Path] = typer.Option(None, "--docs", metavar="DIR", help="Also copy the deliverables (ARCHITECTURE.md, RUNBOOK.md, CAPACITY.md) into DIR, e.g. docs/results/system/<system>."),
                  mlflow_ui: str = typer.Option("http://127.0.0.1:5000", "--mlflow-ui", metavar="URL", help="MLflow UI the report links to (make ui).")):
    """Choose the system, verify it end to end, write report.html + report.md + bundle/ into DIR and log them to MLflow.
    Exit 0 with a recommendation, 3 when no candidate meets the requirements (the report says why)."""
    from llmarch_lab import registry
    from llmarch_lab.store import tracking

    try:
        registry.command("system requirements")(requirements)  # the file first: a bad one writes nothing
        tracking.require_store(write=True)
        res = registry.command("system report")(requirements, out, verify=verify, mlflow_ui=mlflow_ui.rstrip("/"),
                                                screenshot=screenshot, docs_dir=docs)
    except LabError as e:
        fail(e)
    ch = res["choice"]
    typer.echo(("recommended: " + ch.row().system) if ch.feasible else
               f"infeasible: binding constraint {ch.binding}; nearest: {ch.candidates.loc[ch.nearest].system}")
    bad = [k for k, v in res["validation"].items() if not v[0]]
    if bad:
        typer.echo(f"bundle checks failed: {', '.join(bad)}", err=True)
    typer.echo(f"report: {res['html']} (markdown {res['md']}), MLflow run {res['run_id']}")
    raise typer.Exit(0 if ch.feasible and not bad else (1 if bad else 3))


@system_app.command("choose", epilog=SYSTEM_EXAMPLES)
def system_choose(requirements: Path = typer.Argument(..., metavar="REQUIREMENTS.yaml")):
    """Print the candidates table and the recommendation (reads the store, starts nothing, writes nothing)."""
    from llmarch_lab import registry

    try:
        rep = registry.command("system choose")(requirements)
    except LabError as e:
        fail(e)
    rep.print()
    raise typer.Exit(0 if rep.notes and rep.notes[0].startswith("recommended") else 3)


@system_app.command("drill")
def system_drill(out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Drill folder (default mlruns/reports/alert-drill)."),
                 model: str = typer.Option("", "--model", help="The engine's model spec (default SmolLM2-135M-Instruct)."),
                 slots: int = typer.Option(2, "--slots", min=1, help="llama-server --parallel."),
                 detector: str = typer.Option("rules", "--detector", help="The guard's injection detector."),
                 ttft_slo_ms: float = typer.Option(3000.0, "--ttft-slo-ms", min=1.0, help="TTFTp99SLOBurn's threshold."),
                 window_s: int = typer.Option(20, "--window-s", min=2, help="The rules' rate window in the drill."),
                 for_s: int = typer.Option(5, "--for-s", min=0, help="Every rule's `for` in the drill."),
                 baseline_s: float = typer.Option(15.0, "--baseline-s", min=0.0, help="Steady traffic alone first (no alert may fire).")):
    """Fire and resolve every alert of the bundle with induced faults: real engine, guard, gateway, Prometheus, Alertmanager.
    Exit 0 when every expected alert fired and resolved with none in the quiet baseline, 1 otherwise."""
    from llmarch_lab import registry
    from llmarch_lab.store import tracking

    try:
        tracking.require_store(write=True)
        cfg = registry.command("system drill config")(model=model, slots=slots, detector=detector, ttft_slo_ms=ttft_slo_ms,
                                                      window_s=window_s, for_s=for_s, baseline_s=baseline_s)
        res = registry.command("system drill")(cfg, out)
    except LabError as e:
        fail(e)
    typer.echo(res["table"].to_string(index=False))
    typer.echo(f"drill: {'every expected alert fired and resolved' if res['ok'] else 'FAILED'}; "
               f"folder {res['folder']}, MLflow run {res['run_id']}")
    raise typer.Exit(0 if res["ok"] else 1)


@system_app.command("key")
def system_key(keys_file: Path = typer.Argument(..., metavar="KEYS.json", help="The gateway's keys file (created if missing)."),
               alias: str = typer.Option(..., "--alias", help="Who the key is for (a tenant, an application)."),
               rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="Requests per minute (default: no limit)."),
               tpm: Optional[int] = typer.Option(None, "--tpm", min=1, help="Tokens per minute (default: no limit)."),
               max_parallel: Optional[int] = typer.Option(None, "--max-parallel", min=1, help="Requests in flight at once (default: no limit).")):
    """Add a gateway API key with per-key limits to KEYS.json and print the key (stored only as its sha256).
    The bundle's gateway reads the file at start (LLMARCH_GATEWAY_KEYS); above a limit it answers 429."""
    from llmarch_lab import registry

    try:
        key = registry.command("system key")(keys_file, alias, rpm_limit=rpm, tpm_limit=tpm, max_parallel_requests=max_parallel)
    except (LabError, ValueError, OSError) as e:
        fail(e)
    typer.echo(key)


@system_app.command("quality")
def system_quality(requirements: Path = typer.Argument(..., metavar="REQUIREMENTS.yaml"),
                   items: int = typer.Option(200, "--items", min=2, max=1000, help="PubMedQA questions per (model, guard) pair."),
                   rounds: int = typer.Option(3, "--rounds", min=1, max=10, help="Re-choose and measure new top-three pairs at most this often."),
                   out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Answers folder (default mlruns/reports/<system>-stack-quality).")):
    """Measure quality through the running stack (engine + guard gateway) for the recommendation and the two
    runners-up, log one MLflow run per (model, guard) pair; `system report` then uses it instead of a composed value."""
    from llmarch_lab import registry
    from llmarch_lab.store import tracking

    try:
        registry.command("system requirements")(requirements)
        tracking.require_store(write=True)
        res = registry.command("system quality")(requirements, items=items, rounds=rounds, out_dir=out)
    except LabError as e:
        fail(e)
    typer.echo(res["table"].to_string(index=False))
    typer.echo(f"measured {len(res['run_ids'])} pair(s) in {res['rounds']} round(s); MLflow runs {', '.join(res['run_ids']) or '-'}")
