"""`llmarch-lab`: run suites, list suites and notebooks, browse results.

    llmarch-lab run experiments/quickstart.yaml            # run (resumes: finished runs are skipped)
    llmarch-lab run quickstart --only rag --force         # one entry, re-run even if finished
    llmarch-lab run experiments/quantization.yaml --workers 2 --dry-run
    llmarch-lab list                                       # suites, notebooks and their parameters
    llmarch-lab report quickstart                          # latest result per run of a suite
    llmarch-lab ui                                         # mlflow ui on 127.0.0.1:5000

Errors in a suite or its parameters print one line (`error: file:line: field: message`) and
exit with status 2 before anything runs; a failed run makes `run` exit with status 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="llmarch-lab: LLM architecture studies as notebooks, logged to MLflow.")


def _fail(e: Exception, code: int = 2):
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(code)


def _table(rows: list[dict[str, str]], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    if not rows:
        typer.echo(f"{title}: no runs")
        return
    for col in rows[0]:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*[escape(str(v)) for v in r.values()])  # run names like p[x=1] are not markup
    Console(width=max(120, int(os.environ.get("COLUMNS", "0") or 0))).print(table)


@app.command()
def run(suite: Path = typer.Argument(..., help="Suite file (experiments/NAME.yaml) or its name."),
        workers: int = typer.Option(1, "--workers", "-w", min=1, help="Notebooks executed in parallel."),
        only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this entry (repeatable)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list what would run."),
        force: bool = typer.Option(False, "--force", help="Re-run even runs that already FINISHED."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")):
    """Validate every parameter set of SUITE, then execute what is not finished yet."""
    from llmarch_lab import config, paths, runner

    try:
        s = config.load_suite(suite, only=only)
        outcomes = runner.run_suite(s, workers=workers, force=force, dry_run=dry_run, progress=not quiet)
    except LabError as e:
        _fail(e)
    _table(runner.summary_rows(outcomes), f"suite {s.name} ({len(outcomes)} runs)")
    if not dry_run:
        typer.echo(f"Browse the results: make ui  (or: mlflow ui --backend-store-uri {paths.tracking_uri()})")
    if any(o.status == "FAILED" for o in outcomes):
        for o in outcomes:
            if o.status == "FAILED":
                typer.echo(f"FAILED {o.spec.name}: {o.error}", err=True)
        raise typer.Exit(1)


@app.command("list")
def list_(params: bool = typer.Option(True, help="Show each notebook's parameters."),
          metrics: bool = typer.Option(False, "--metrics", help="List the declared metrics instead (schema.SPECS).")):
    """Suites in experiments/ and notebooks with their parameters (name, type, default, help)."""
    from llmarch_lab import config

    if metrics:
        from llmarch_lab import schema

        for s in schema.SPECS:
            typer.echo(f"{s.pattern:<44} {s.direction:<7} {s.unit:<11} {s.meaning}")
        return

    for f in config.suite_files():
        try:
            s = config.load_suite(f)
            typer.echo(f"suite {s.name:<16} {len(s.runs):>3} runs  {f.relative_to(config.paths.home())}  {s.description}")
        except LabError as e:
            typer.echo(f"suite {f.stem:<16} INVALID  {e}")
    for nb in sorted(config.notebooks_dir().glob("*.ipynb")):
        try:
            cls = config.notebook_params_class(nb)
        except LabError as e:
            typer.echo(f"\nnotebook {nb.stem}: {e}")
            continue
        typer.echo(f"\nnotebook {nb.stem}  (lab {cls.lab}, {cls.__module__}:{cls.__name__})")
        if params:
            for name, f in cls.model_fields.items():
                ann = getattr(f.annotation, "__name__", str(f.annotation)).replace("typing.", "")
                typer.echo(f"  {name:<22} {ann:<14} = {f.default!r:<28} {f.description or ''}")


@app.command()
def report(suite: str = typer.Argument(..., help="Suite name (its MLflow experiment)."),
           fmt: str = typer.Option("rich", "--format", "-f", help="rich (console) | md | csv."),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the table here instead of printing."),
           lab: Optional[str] = typer.Option(None, "--lab", help="Only this lab's table.")):
    """Each lab's own table of a suite's finished runs, read from the MLflow store."""
    from llmarch_lab import paths, registry, tracking
    from llmarch_lab.common.report import write_atomic

    if fmt not in ("rich", "md", "csv"):
        _fail(LabError(f"--format: {fmt!r} is not one of rich, md, csv"))
    try:
        tracking.require_reachable()
        labs = tracking.labs_in(suite)
        if lab is not None:
            registry.get(lab)
            labs = [x for x in labs if x == lab]
        unknown = [x for x in labs if x not in registry.LABS]
        reports = [registry.report(x, suite) for x in labs if x in registry.LABS]
    except LabError as e:
        _fail(e)
    if not reports:
        _fail(LabError(f"suite {suite!r}: no finished runs{' of lab ' + lab if lab else ''} in {paths.tracking_uri()}"))
    if fmt == "rich" and out is None:
        for rep in reports:
            rep.print()
    else:
        text = "\n".join(rep.markdown() if fmt == "md" else rep.csv() for rep in reports) if fmt != "rich" else \
            "\n".join(rep.markdown() for rep in reports)
        if out is None:
            typer.echo(text, nl=False)
        else:
            write_atomic(out, text)
            typer.echo(f"wrote {out}")
    for x in unknown:
        typer.echo(f"note: runs of lab {x!r} have no registered report", err=True)


@app.command()
def ui(port: int = typer.Option(5000, help="Port on 127.0.0.1.")):
    """Start `mlflow ui` on 127.0.0.1 against the lab's store."""
    from llmarch_lab import paths

    uri = paths.tracking_uri()
    typer.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (paths.mlruns_dir() / "artifacts").as_uri()]
    raise typer.Exit(subprocess.call(cmd))


def main():  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
