"""`llmarch-lab run | status | list`: execute a suite, watch its runs, list suites and notebooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError
from llmarch_lab.cli.base import MAX_WORKERS, app, fail, table
from llmarch_lab.common.yamlmodel import MAX_RUNS

# "\b" keeps click from re-wrapping the example lines into one paragraph.
RUN_EXAMPLES = """Examples:

\b
  llmarch-lab run experiments/quickstart.yaml       # resumes: FINISHED runs are skipped
  llmarch-lab run quickstart --only rag --force    # one entry, re-run even if finished
  llmarch-lab run rag --dry-run --show-params      # validate, show what would run, write nothing
"""


@app.command(epilog=RUN_EXAMPLES)
def run(suite: Path = typer.Argument(..., metavar="SUITE", help="Suite file (experiments/NAME.yaml) or its name."),
        workers: int = typer.Option(1, "--workers", "-w", min=1, max=MAX_WORKERS, metavar="N",
                                    help=f"Notebooks executed in parallel (1..{MAX_WORKERS})."),
        only: Optional[list[str]] = typer.Option(None, "--only", metavar="NAME",
                                                 help="Run only this entry or run name (repeatable)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list what would run; writes nothing."),
        show_params: bool = typer.Option(False, "--show-params", help="Print each run's resolved parameters."),
        force: bool = typer.Option(False, "--force", help="Re-run even runs that already FINISHED."),
        max_runs: int = typer.Option(MAX_RUNS, "--max-runs", min=1, metavar="N",
                                     help="Refuse a suite whose grids expand to more runs than this."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        executor: Optional[str] = typer.Option(None, "--executor", "-x", metavar="local|ray|slurm",
                                               help="Where runs execute (default: the suite's executor block, else local)."),
        address: Optional[str] = typer.Option(None, "--address", metavar="RAY_ADDRESS",
                                              help="Ray: join this cluster (host:6379 or ray://host:10001); default: a local one.")):
    """Validate every parameter set of SUITE, then execute what is not finished yet."""
    from llmarch_lab import config, paths
    from llmarch_lab.run import runner, stopping
    from llmarch_lab.run import status as run_status

    notes: list[str] = []
    try:
        s = config.load_suite(suite, only=only, max_runs=max_runs, notes=notes)
        for line in notes:
            typer.echo(f"note: {line}", err=True)
        if show_params:
            _print_params(s)
        if executor is not None and executor not in ("local", "ray", "slurm"):
            raise LabError(f"--executor {executor}: unknown executor (valid: local, ray, slurm)")
        outcomes = runner.run_suite(s, workers=workers, force=force, dry_run=dry_run, progress=not quiet,
                                    announce=lambda line: typer.echo(line, err=True), executor=executor,
                                    address=address)
    except LabError as e:
        fail(e)
    except stopping.Interrupted as e:  # Ctrl-C: what was stopped, and how to resume, in one line
        typer.echo(f"\n{e}", err=True)
        raise typer.Exit(130) from None
    rows = run_status.summary_rows(outcomes)
    if dry_run:
        for row, o in zip(rows, outcomes):
            row["params (suite)"] = ", ".join(f"{k}={v}" for k, v in o.spec.overrides.items()) or "(defaults)"
    table(rows, f"suite {s.name} ({len(outcomes)} runs{', dry run: nothing written' if dry_run else ''})")
    if not dry_run:
        typer.echo(f"Browse the results: make ui  (or: mlflow ui --backend-store-uri {paths.tracking_uri()})")
    if any(o.status in ("FAILED", "LOST") for o in outcomes):
        for o in outcomes:
            if o.status in ("FAILED", "LOST"):
                typer.echo(f"{o.status} {o.spec.name}: {o.error}", err=True)
        raise typer.Exit(1)


@app.command()
def status(suite: str = typer.Argument(..., metavar="SUITE", help="Suite file or name (its MLflow experiment)."),
           watch: float = typer.Option(0.0, "--watch", metavar="S", min=0,
                                       help="Refresh every S seconds until every run is settled (0: once)."),
           all_attempts: bool = typer.Option(False, "--all", help="Every attempt, not only each run's newest.")):
    """Each run of SUITE: status, attempt, host, worker, heartbeat age, wall time (live with --watch)."""
    import time as _time

    from llmarch_lab.run import status as st

    try:
        name = st.suite_name(suite)
        if watch <= 0:
            rows = st.rows(name, all_attempts=all_attempts)
            table(rows, st.title(name, rows))
            return
        from rich.console import Console
        from rich.live import Live

        with Live(st.rich_table(name, all_attempts), console=Console(), refresh_per_second=4) as live:
            while True:
                _time.sleep(watch)
                rows = st.rows(name, all_attempts=all_attempts)
                live.update(st.rich_table(name, all_attempts, rows))
                if rows and all(r["status"] not in ("RUNNING", "QUEUED") for r in rows):
                    break
    except LabError as e:
        fail(e)


def _print_params(s) -> None:
    import yaml

    for spec in s.runs:
        typer.echo(f"# {spec.name}  ({spec.notebook.stem}, lab {spec.lab})")
        typer.echo(yaml.safe_dump(spec.resolved(), sort_keys=True, allow_unicode=True).rstrip())


def _type_text(f) -> str:
    """A parameter's type as a user reads it: 'int 1..4096', 'fp32|int8|nf4', 'list[str]'."""
    import typing

    ann = f.annotation
    inner = typing.get_args(ann)[0] if typing.get_origin(ann) is list and typing.get_args(ann) else None
    if typing.get_origin(ann) is typing.Literal:
        text = "|".join(str(a) for a in typing.get_args(ann))
    elif inner is not None and typing.get_origin(inner) is typing.Literal:  # list[Literal[...]]
        text = "list of " + "|".join(str(a) for a in typing.get_args(inner))
    elif isinstance(ann, type) and typing.get_origin(ann) is None:
        text = ann.__name__
    else:
        text = str(ann).replace("typing.", "")
    bounds = {}
    for m in f.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(m, attr, None) is not None:
                bounds[attr] = getattr(m, attr)
        if getattr(m, "pattern", None):
            text += f" /{m.pattern}/"
    if bounds:
        lo = f"{bounds['ge']}" if "ge" in bounds else (f">{bounds['gt']}" if "gt" in bounds else "")
        hi = f"{bounds['le']}" if "le" in bounds else (f"<{bounds['lt']}" if "lt" in bounds else "")
        text += f" {lo}..{hi}"
    return text


@app.command("list", epilog="Examples:\n\n\b\n  llmarch-lab list\n  llmarch-lab list --no-params\n  llmarch-lab list --metrics\n")
def list_(params: bool = typer.Option(True, "--params/--no-params", help="Show each notebook's parameters."),
          metrics: bool = typer.Option(False, "--metrics", help="List the declared metrics instead (schema.SPECS).")):
    """Suites in experiments/ and notebooks with their parameters (name, type and range, default, help)."""
    from llmarch_lab import config, paths

    if metrics:
        from llmarch_lab import schema

        for s in schema.SPECS:
            typer.echo(f"{s.pattern:<44} {s.direction:<7} {s.unit:<11} {s.meaning}")
        return

    try:
        home = paths.home()
    except LabError as e:
        fail(e)
    if not (home / "experiments").is_dir() and not config.notebooks_dir().is_dir():
        fail(LabError(f"{home}: no experiments/ or notebooks/ folder here (LLMARCH_HOME="
                       f"{os.environ.get('LLMARCH_HOME', '(unset)')})"))
    for f in config.suite_files():
        try:
            s = config.load_suite(f)
            about = (s.description.strip().splitlines() or [""])[0]
            typer.echo(f"suite {s.name:<16} {len(s.runs):>3} runs  {f.relative_to(home)}  "
                       f"{about[:100]}{'…' if len(about) > 100 else ''}")
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
                default = f.default_factory() if f.default_factory is not None else f.default
                typer.echo(f"  {name:<22} {_type_text(f):<24} = {default!r:<24} {f.description or ''}")
