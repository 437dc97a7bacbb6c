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
                  mlflow_ui: str = typer.Option("http://127.0.0.1:5000", "--mlflow-ui", metavar="URL", help="MLflow UI the report links to (make ui).")):
    """Choose the system, verify it end to end, write report.html + report.md + bundle/ into DIR and log them to MLflow.
    Exit 0 with a recommendation, 3 when no candidate meets the requirements (the report says why)."""
    from llmarch_lab import registry
    from llmarch_lab.store import tracking

    try:
        registry.command("system requirements")(requirements)  # the file first: a bad one writes nothing
        tracking.require_store(write=True)
        res = registry.command("system report")(requirements, out, verify=verify, mlflow_ui=mlflow_ui.rstrip("/"),
                                                screenshot=screenshot)
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
