"""The console entry point: every failure is one line on stderr and an exit status."""

from __future__ import annotations

import os
import sys

import typer

from llmarch_lab import LabError
from llmarch_lab.cli import labs, results, suites, system  # noqa: F401 - they register their commands
from llmarch_lab.cli.base import app, error_line, quiet_libraries, quiet_mlflow
from llmarch_lab.common import env


def main(argv: list[str] | None = None) -> int:
    """The console entry point: every failure is one line on stderr and an exit status
    (2 bad input or usage, 1 a failed run or an unexpected error, 130 interrupted)."""
    quiet_mlflow()
    try:
        env.check_all()  # every variable that is set, before any work (docs/ENVIRONMENT.md)
        quiet_libraries(debug=bool(env.get("LLMARCH_DEBUG")))
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
        typer.echo(error_line(f"{msg} (see: llmarch-lab {_command(argv)}--help)"), err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except LabError as e:
        typer.echo(error_line(e), err=True)
        return 2
    except OSError as e:  # a path the user gave: too long, a loop, no permission, not a folder...
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(error_line(f"{where}{e.strerror or e}"), err=True)
        return 2
    except RuntimeError as e:
        if not str(e).startswith("Symlink loop"):  # pathlib's resolve() on a link to itself (Python < 3.13)
            return _unexpected(e)
        typer.echo(error_line(f"{str(e)[len('Symlink loop from '):]}: a symbolic link loop"), err=True)
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not 300 of traceback
        return _unexpected(e)


def _unexpected(e: Exception) -> int:
    if os.environ.get("LLMARCH_DEBUG", "").strip().lower() in env.FLAG_TRUE:
        raise e
    first = (str(e).strip().splitlines() or [""])[0][:300]
    typer.echo(error_line(f"unexpected {type(e).__name__}: {first} (LLMARCH_DEBUG=1 shows the traceback; "
                          "please report it)"), err=True)
    return 1


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else argv
    words = [a for a in args if a in ("run", "list", "report", "status", "ui", "guard", "scan", "verify", "repair", "cache", "eval", "system", "choose")]
    return "".join(w + " " for w in words[:2])


def console_main() -> None:  # pragma: no cover - the `llmarch-lab` script
    sys.exit(main())
