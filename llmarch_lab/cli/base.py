"""What every sub-command shares: the Typer app, one-line failures, the runs table."""

from __future__ import annotations

import logging
import os

import typer

MAX_WORKERS = 64  # notebooks in parallel; each is a kernel process with its own model copies

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="llmarch-lab: LLM architecture studies as notebooks, logged to MLflow.")


def fail(e: Exception, code: int = 2):
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(code)


def quiet_mlflow() -> None:
    # MLflow's INFO lines ("Creating initial MLflow database tables...") are not the user's
    # business; MLflow sets its logger's level from this variable when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def table(rows: list[dict[str, str]], title: str) -> None:
    from llmarch_lab.common.report import print_rows

    if not rows:
        typer.echo(f"{title}: no runs")
        return
    print_rows(rows, title)
