"""`llmarch-lab guard scan | verify | repair` and `llmarch-lab cache eval`: the labs' file commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmarch_lab import LabError
from llmarch_lab.cli.base import app, fail

guard_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Guardrails: scan a file with one check, verify or repair an audit log.")
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
                                                      help="injection: union-lr (default)|rules|minilm-lr|nanoguard|cascade|...; "
                                                           "pii: spacy/tuned (default)|no_op/default|...; "
                                                           "toxicity: tox-ensemble (default)|profanity-check|hatesonar|minilm-tox."),
               text_column: str = typer.Option("text", "--text-column", metavar="NAME", help="The column scanned."),
               quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")):
    """Score every row of FILE with one guardrail check; adds score, flagged, latency_ms (pii: entities, redacted)."""
    from llmarch_lab import registry

    try:
        summary = registry.command("guard scan")(check, in_, out, detector=detector, text_column=text_column,
                                                 progress=not quiet)
    except LabError as e:
        fail(e)
    p50, p95 = summary.get("latency_ms_p50"), summary.get("latency_ms_p95")
    timing = f", latency p50 {p50:.1f} ms, p95 {p95:.1f} ms" if p50 is not None else ""
    typer.echo(f"wrote {out}: {summary['rows']} rows, {summary['flagged']} flagged "
               f"({summary['detector']}, threshold {summary['threshold']:.3g}){timing}")


GUARD_EXIT_CODES = """Exit codes:

\b
  0  intact (repair: the torn line was moved aside, or nothing to repair)
  1  tampered: a line edited, inserted, deleted or reordered, a non-canonical line,
     a duplicate key, or the anchor does not match (records cut off the end)
  2  usage error, or the file cannot be opened
  3  torn last line only (a crash mid-write); fix: llmarch-lab guard repair FILE
  4  not an audit log: empty, binary or random bytes, not JSON lines of records
"""

VERIFY_EXAMPLES = """Examples:

\b
  llmarch-lab guard verify audit.jsonl
  llmarch-lab guard verify audit.jsonl --expect-count 120 --expect-head 3f1c...
  llmarch-lab guard verify audit.jsonl --key-env AUDIT_KEY

""" + GUARD_EXIT_CODES


def _key_env_option():
    return typer.Option("", "--key-env", metavar="NAME", help="Environment variable holding the HMAC key, if the log is keyed.")


@guard_app.command("verify", epilog=VERIFY_EXAMPLES)
def guard_verify(path: Path = typer.Argument(..., metavar="AUDIT.jsonl", help="A guard audit log."),
                 key_env: str = _key_env_option(),
                 expect_head: str = typer.Option("", "--expect-head", metavar="HASH",
                                                 help="A head printed by an earlier verify: that record must still "
                                                      "be in the chain (catches a cut-off tail)."),
                 expect_count: Optional[int] = typer.Option(None, "--expect-count", metavar="N", min=1,
                                                            help="The log must hold at least N records (with "
                                                                 "--expect-head: that record is line N).")):
    """Check an audit log: every line's exact bytes, hash, seq and link to the line before; one line
    naming the file and the first bad line. An intact log prints its anchor (count and head): keep it
    elsewhere and pass it back to catch truncation."""
    _audit_command("guard verify", "read", path, key_env, expect_head=expect_head, expect_count=expect_count)


@guard_app.command("repair", epilog=GUARD_EXIT_CODES)
def guard_repair(path: Path = typer.Argument(..., metavar="AUDIT.jsonl", help="A guard audit log."),
                 key_env: str = _key_env_option()):
    """Move a torn last line (a crash mid-write) to AUDIT.jsonl.torn-<time> so appends can go on;
    says what it did in one line. A tampered log, or a file that is no audit log, is left untouched."""
    _audit_command("guard repair", "open", path, key_env)


def _audit_command(name: str, verb: str, path: Path, *args, **kw):
    """verify | repair: the report's one line, its exit code; an unopenable file in one line (exit 2)."""
    from llmarch_lab import registry

    try:
        rep = registry.command(name)(path, *args, **kw)
    except OSError as e:
        fail(LabError(f"{path}: cannot {verb} ({e.strerror or e})"))
    except LabError as e:
        fail(e)
    typer.echo(rep.line(path))
    raise typer.Exit(rep.exit_code)


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
        fail(e)
    typer.echo(json.dumps(result, indent=1, default=str, allow_nan=False))
