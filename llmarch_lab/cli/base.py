"""What every sub-command shares: the Typer app, one-line failures, the runs table."""

from __future__ import annotations

import logging
import os

import typer

MAX_WORKERS = 64  # notebooks in parallel; each is a kernel process with its own model copies

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="llmarch-lab: LLM architecture studies as notebooks, logged to MLflow.")


MAX_ERROR_CHARS = 1000


def error_line(msg: object) -> str:
    """The one line every error prints: control characters and terminal escapes shown escaped (a
    value the user typed never drives the terminal, nor splits the line), at most MAX_ERROR_CHARS."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(msg).strip())
    return "error: " + (text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…")


def fail(e: Exception, code: int = 2):
    typer.echo(error_line(e), err=True)
    raise typer.Exit(code)


# Loggers whose import-time warnings reach every command ("Failed to load torchao/_C_mxfp8...",
# torch's pytree deprecation notes): the user's business only with LLMARCH_DEBUG=1. torch resets
# its parent logger's level on import, so the emitting child loggers are named too.
LIBRARY_LOGGERS = ("torch", "torchao", "torch.utils._pytree", "transformers", "sentence_transformers",
                   "datasets", "huggingface_hub", "onnxruntime", "presidio-analyzer", "spacy")


def quiet_mlflow() -> None:
    # MLflow's INFO lines ("Creating initial MLflow database tables...") are not the user's
    # business; MLflow sets its logger's level from this variable when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def quiet_libraries(debug: bool) -> None:
    """Library warnings, log lines and model-loading bars hidden unless LLMARCH_DEBUG=1 (the lab's
    own progress bars and notes are not warnings: they stay)."""
    if debug:
        return
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar follows it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


MAX_TABLE_ROWS = 200  # a 10,000-run suite drew its table for 15 s; past this, counts stand for the rest


def table(rows: list[dict[str, str]], title: str) -> None:
    from collections import Counter

    from llmarch_lab.common.report import print_rows

    if not rows:
        typer.echo(f"{title}: no runs")
        return
    print_rows(rows[:MAX_TABLE_ROWS], title)
    if len(rows) > MAX_TABLE_ROWS:
        counts = Counter(r.get("status", "") for r in rows)
        typer.echo(f"... and {len(rows) - MAX_TABLE_ROWS:,} more rows not shown; all {len(rows):,}: "
                   + ", ".join(f"{k} {v:,}" for k, v in counts.most_common()))
