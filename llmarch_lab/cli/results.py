"""`llmarch-lab report | ui`: each lab's table of a suite's runs, and the MLflow UI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError
from llmarch_lab.cli.base import app, fail
from llmarch_lab.common.procs import PORT_MAX, PORT_MIN

REPORT_EXAMPLES = """Examples:

\b
  llmarch-lab report quickstart
  llmarch-lab report rag --lab rag --format md --out docs/results/rag.md
  llmarch-lab report serving --format csv > serving.csv
"""


@app.command(epilog=REPORT_EXAMPLES)
def report(suite: str = typer.Argument(..., metavar="SUITE", help="Suite name (its MLflow experiment)."),
           fmt: str = typer.Option("rich", "--format", "-f", metavar="rich|md|csv", help="rich (console) | md | csv."),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the table here instead of printing."),
           lab: Optional[str] = typer.Option(None, "--lab", help="Only this lab's table.")):
    """Each lab's own table of a suite's finished runs (its key metrics first), then the runs
    that FAILED or were KILLED with their error, read from the MLflow store."""
    from llmarch_lab import paths, registry
    from llmarch_lab.common.files import check_output, write_atomic
    from llmarch_lab.store import tracking

    if fmt not in ("rich", "md", "csv"):
        fail(LabError(f"--format: {fmt!r} is not one of rich, md, csv"))
    try:
        if out is not None:
            db = paths.sqlite_path(paths.tracking_uri())
            check_output(out, {"the MLflow store": db} if db is not None else {})
        if lab is not None:
            registry.get(lab)
        if not tracking.require_store(write=False):
            raise tracking.no_store(paths.tracking_uri())
        labs = tracking.labs_in(suite)
        if lab is not None:
            labs = [x for x in labs if x == lab]
        unknown = [x for x in labs if x not in registry.LABS]
        reports = [r for x in labs if x in registry.LABS for r in registry.reports(x, suite)]
        failed = tracking.unfinished_runs(suite, lab)
    except LabError as e:
        fail(e)
    if not reports and not failed:
        fail(LabError(f"suite {suite!r}: no runs{' of lab ' + lab if lab else ''} in {paths.tracking_uri()}"))
    failed_lines = [f"{r['status']} {r['name']} ({r['lab']}): {r['error'] or 'no error recorded'}" for r in failed]
    if fmt == "rich" and out is None:
        for rep in reports:
            rep.print()
        for line in failed_lines:
            typer.echo(line)
    else:
        text = "\n".join(rep.csv() if fmt == "csv" else rep.markdown() for rep in reports)
        if failed_lines and fmt != "csv":
            text += "\n**Not finished**\n\n" + "".join(f"- {x}\n" for x in failed_lines)
        if out is None:
            typer.echo(text, nl=False)
        else:
            try:
                write_atomic(out, text)
            except OSError as e:
                fail(LabError(f"--out {out}: cannot write ({e.strerror or e})"))
            typer.echo(f"wrote {out}")
    if failed_lines and fmt == "csv":
        for line in failed_lines:
            typer.echo(line, err=True)
    for x in unknown:
        typer.echo(f"note: runs of lab {x!r} have no registered report", err=True)


@app.command()
def ui(port: int = typer.Option(5000, min=PORT_MIN, max=PORT_MAX, help="Port on 127.0.0.1.")):
    """Start `mlflow ui` on 127.0.0.1 against the lab's store (it must exist: the UI never creates one)."""
    from llmarch_lab import paths
    from llmarch_lab.store import tracking

    uri = paths.tracking_uri()
    try:
        if not tracking.require_store(write=False):
            raise tracking.no_store(uri)
    except LabError as e:
        fail(e)
    typer.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (paths.mlruns_dir() / "artifacts").as_uri()]
    raise typer.Exit(subprocess.call(cmd))
