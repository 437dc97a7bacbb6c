"""The process that executes one notebook: papermill, bound to the worker that started it.

    python -m llmarch_lab.run.nbchild --parent PID --workdir DIR -- <papermill arguments>

The runner's worker (a thread of `llmarch-lab run`, a Ray task, a submitit job) starts this
process instead of papermill itself. Linux sends it SIGTERM when the worker dies, even by kill -9
(parent-death signal); on SIGTERM, or when it finds its parent gone, it kills its whole tree
(the Jupyter kernel runs in a session of its own, so a process-group signal would miss it),
removes the run's work folder that nobody is left to log, and exits 143. So a killed runner
leaves no kernel computing into a run that the next invocation marks KILLED, and no
/tmp/llmarch-run-* folder behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time

from llmarch_lab.common.procs import kill_tree, set_pdeathsig


def _die(workdir: str, code: int = 143) -> None:
    kill_tree(include_self=False, grace_s=1.0)
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.run.nbchild")
    ap.add_argument("--parent", type=int, required=True, help="pid of the worker that started us")
    ap.add_argument("--workdir", required=True, help="removed if we are killed")
    ap.add_argument("papermill", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    pm_args = args.papermill[1:] if args.papermill[:1] == ["--"] else args.papermill

    signal.signal(signal.SIGTERM, lambda *_: _die(args.workdir))
    set_pdeathsig(signal.SIGTERM)
    if os.getppid() != args.parent:  # the worker died before the signal was armed
        _die(args.workdir)

    def watch_parent():  # belt and braces: PDEATHSIG follows the launching thread, not the process
        while True:
            time.sleep(1.0)
            if os.getppid() != args.parent:
                _die(args.workdir)

    threading.Thread(target=watch_parent, daemon=True, name="nbchild-parent-watch").start()
    from papermill.cli import papermill as pm_cli

    try:
        pm_cli.main(args=pm_args, prog_name="papermill", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
