"""`python -m llmarch_lab.labs.guardrails.gateway serve-guard ...`: the guard service (started by launch)."""

from __future__ import annotations

import argparse
import sys

from llmarch_lab.common.procs import port_arg
from llmarch_lab.labs.guardrails.gateway.service import serve_guard


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.gateway")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-guard", help="the guard service (started by launch)")
    s.add_argument("--config", required=True)
    s.add_argument("--port", type=port_arg, required=True)
    s.add_argument("--audit", default="")
    s.add_argument("--escalations", default="")
    s.add_argument("--redactor", default="")
    s.add_argument("--parent-pid", type=int, default=0)
    a = ap.parse_args(argv)
    serve_guard(a.config, a.port, a.audit, a.escalations, a.redactor, a.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

