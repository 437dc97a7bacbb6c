"""`llmarch-lab`: run suites, list suites and notebooks, browse results.

    llmarch-lab run experiments/quickstart.yaml            # run (resumes: finished runs are skipped)
    llmarch-lab run quickstart --only rag --force         # one entry, re-run even if finished
    llmarch-lab run experiments/quantization.yaml --workers 2 --dry-run --show-params
    llmarch-lab list                                       # suites, notebooks and their parameters
    llmarch-lab report quickstart                          # each lab's table of a suite's runs
    llmarch-lab run quickstart --executor ray --workers 4    # on a Ray cluster (or slurm)
    llmarch-lab status quickstart --watch 2               # each run: status, host, heartbeat age
    llmarch-lab ui                                         # mlflow ui on 127.0.0.1:5000

Bad input (a suite, a parameter, a flag, the store) prints one line (`error: file:line: field:
message`) and exits with status 2 before anything runs or is written; a failed run makes `run`
exit with status 1. LLMARCH_DEBUG=1 shows a traceback for an unexpected error.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError

MAX_WORKERS = 64  # notebooks in parallel; each is a kernel process with its own model copies

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="llmarch-lab: LLM architecture studies as notebooks, logged to MLflow.")


def _fail(e: Exception, code: int = 2):
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(code)


def _quiet_mlflow() -> None:
    # MLflow's INFO lines ("Creating initial MLflow database tables...") are not the user's
    # business; MLflow sets its logger's level from this variable when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
        max_runs: int = typer.Option(10_000, "--max-runs", min=1, metavar="N",
                                     help="Refuse a suite whose grids expand to more runs than this."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        executor: Optional[str] = typer.Option(None, "--executor", "-x", metavar="local|ray|slurm",
                                               help="Where runs execute (default: the suite's executor block, else local)."),
        address: Optional[str] = typer.Option(None, "--address", metavar="RAY_ADDRESS",
                                              help="Ray: join this cluster (host:6379 or ray://host:10001); default: a local one.")):
    """Validate every parameter set of SUITE, then execute what is not finished yet."""
    from llmarch_lab import config, paths, runner

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
        _fail(e)
    rows = runner.summary_rows(outcomes)
    if dry_run:
        for row, o in zip(rows, outcomes):
            row["params (suite)"] = ", ".join(f"{k}={v}" for k, v in o.spec.overrides.items()) or "(defaults)"
    _table(rows, f"suite {s.name} ({len(outcomes)} runs{', dry run: nothing written' if dry_run else ''})")
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

    from llmarch_lab import status as st

    try:
        name = st.suite_name(suite)
        if watch <= 0:
            rows = st.rows(name, all_attempts=all_attempts)
            _table(rows, st.title(name, rows))
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
        _fail(e)


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
        _fail(e)
    if not (home / "experiments").is_dir() and not config.notebooks_dir().is_dir():
        _fail(LabError(f"{home}: no experiments/ or notebooks/ folder here (LLMARCH_HOME="
                       f"{os.environ.get('LLMARCH_HOME', '(unset)')})"))
    for f in config.suite_files():
        try:
            s = config.load_suite(f)
            typer.echo(f"suite {s.name:<16} {len(s.runs):>3} runs  {f.relative_to(home)}  {s.description}")
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
    from llmarch_lab import paths, registry, tracking
    from llmarch_lab.common.files import write_atomic

    if fmt not in ("rich", "md", "csv"):
        _fail(LabError(f"--format: {fmt!r} is not one of rich, md, csv"))
    try:
        if lab is not None:
            registry.get(lab)
        if not tracking.require_store(write=False):
            raise LabError(f"no MLflow store at {paths.tracking_uri()} yet: nothing has run "
                           "(llmarch-lab run SUITE), or MLFLOW_TRACKING_URI points elsewhere")
        labs = tracking.labs_in(suite)
        if lab is not None:
            labs = [x for x in labs if x == lab]
        unknown = [x for x in labs if x not in registry.LABS]
        reports = [r for x in labs if x in registry.LABS for r in registry.reports(x, suite)]
        failed = tracking.unfinished_runs(suite, lab)
    except LabError as e:
        _fail(e)
    if not reports and not failed:
        _fail(LabError(f"suite {suite!r}: no runs{' of lab ' + lab if lab else ''} in {paths.tracking_uri()}"))
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
                _fail(LabError(f"--out {out}: cannot write ({e.strerror or e})"))
            typer.echo(f"wrote {out}")
    if failed_lines and fmt == "csv":
        for line in failed_lines:
            typer.echo(line, err=True)
    for x in unknown:
        typer.echo(f"note: runs of lab {x!r} have no registered report", err=True)


guard_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Guardrails: scan a file with one check, verify an audit log.")
app.add_typer(guard_app, name="guard")

SCAN_EXAMPLES = """Examples:

\b
  llmarch-lab guard scan --check injection --in prompts.jsonl --out flagged.jsonl
  llmarch-lab guard scan --check pii --in tickets.csv --out pii.jsonl --detector spacy/tuned
  llmarch-lab guard scan --check toxicity --in chat.parquet --out tox.jsonl --text-column message
"""


@guard_app.command("scan", epilog=SCAN_EXAMPLES)
def guard_scan(check: str = typer.Option(..., "--check", metavar="injection|pii|toxicity", help="The check to run."),
               in_: Path = typer.Option(..., "--in", metavar="FILE", help=".jsonl, .csv or .parquet with a text column."),
               out: Path = typer.Option(..., "--out", metavar="OUT.jsonl", help="One JSON line per input row, in order."),
               detector: Optional[str] = typer.Option(None, "--detector", metavar="NAME",
                                                      help="injection: rules|minilm-lr|nanoguard|cascade|...; "
                                                           "pii: spacy/tuned|no_op/default|...; toxicity: profanity-check."),
               text_column: str = typer.Option("text", "--text-column", metavar="NAME", help="The column scanned."),
               quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")):
    """Score every row of FILE with one guardrail check; adds score, flagged, latency_ms (pii: entities, redacted)."""
    from llmarch_lab import registry

    try:
        summary = registry.command("guard scan")(check, in_, out, detector=detector, text_column=text_column,
                                                 progress=not quiet)
    except LabError as e:
        _fail(e)
    p50, p95 = summary.get("latency_ms_p50"), summary.get("latency_ms_p95")
    timing = f", latency p50 {p50:.1f} ms, p95 {p95:.1f} ms" if p50 is not None else ""
    typer.echo(f"wrote {out}: {summary['rows']} rows, {summary['flagged']} flagged "
               f"({summary['detector']}, threshold {summary['threshold']:.3g}){timing}")


@guard_app.command("verify")
def guard_verify(path: Path = typer.Argument(..., metavar="AUDIT.jsonl", help="A guard audit log."),
                 key_env: str = typer.Option("", "--key-env", metavar="NAME",
                                             help="Environment variable holding the HMAC key, if the log is keyed.")):
    """Check an audit log's hash chain: exit 0 intact, 1 tampered or torn (naming the line), 2 unreadable."""
    from llmarch_lab import registry

    try:
        rep = registry.command("guard verify")(path, key_env)
    except OSError as e:
        _fail(LabError(f"{path}: cannot read ({e.strerror or e})"))
    except LabError as e:
        _fail(e)
    typer.echo(rep.line(path))
    raise typer.Exit(0 if rep.ok else 1)


cache_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Cost lab: evaluate the chosen semantic cache on a file of question pairs.")
app.add_typer(cache_app, name="cache")

CACHE_EXAMPLES = """Examples:

\b
  llmarch-lab cache eval --pairs data/qqp/pairs_dev.jsonl.gz
  llmarch-lab cache eval --pairs heldout.jsonl --out result.json
"""


@cache_app.command("eval", epilog=CACHE_EXAMPLES)
def cache_eval(pairs: Path = typer.Option(..., "--pairs", metavar="FILE.jsonl[.gz]",
                                          help="One JSON object per line: text_a, text_b, label (1 = duplicate)."),
               out: Optional[Path] = typer.Option(None, "--out", metavar="OUT.json", help="Also write the result here (atomically).")):
    """Insert every distinct text_a into an empty cache (the chosen configuration), query every text_b;
    print hit_rate, wrong_hit_rate, query latency p50/p95 and the configuration as JSON."""
    import json

    from llmarch_lab import registry

    try:
        result = registry.command("cache eval")(pairs, out)
    except LabError as e:
        _fail(e)
    typer.echo(json.dumps(result, indent=1, default=str))


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
    from llmarch_lab import registry, tracking

    tracking.require_store(write=True)
    try:
        res = registry.command("system report")(requirements, out, verify=verify, mlflow_ui=mlflow_ui.rstrip("/"),
                                                screenshot=screenshot)
    except LabError as e:
        _fail(e)
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
        _fail(e)
    rep.print()
    raise typer.Exit(0 if rep.notes and rep.notes[0].startswith("recommended") else 3)


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


def main(argv: list[str] | None = None) -> int:
    """The console entry point: every failure is one line on stderr and an exit status
    (2 bad input or usage, 1 a failed run or an unexpected error, 130 interrupted)."""
    _quiet_mlflow()
    try:
        rc = app(args=argv, prog_name="llmarch-lab", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except typer.TyperException as e:  # (typer's click) usage: bad flag, value out of range, no argument
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        if type(e).__name__ == "NoArgsIsHelpError":  # `llmarch-lab guard` alone: its help, as click does
            typer.echo(msg, err=True)
            return 2
        typer.echo(f"error: {msg} (see: llmarch-lab {_command(argv)}--help)", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except LabError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not 300 of traceback
        if os.environ.get("LLMARCH_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        typer.echo(f"error: unexpected {type(e).__name__}: {first} (LLMARCH_DEBUG=1 shows the traceback; "
                   "please report it)", err=True)
        return 1


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    words = [a for a in args if a in ("run", "list", "report", "status", "ui", "guard", "scan", "verify", "cache", "eval", "system", "choose")]
    return "".join(w + " " for w in words[:2])


def console_main() -> None:  # pragma: no cover - the `llmarch-lab` script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
