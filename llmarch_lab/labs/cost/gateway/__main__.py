"""`python -m llmarch_lab.labs.cost.gateway serve-router ...`: the router service (started by launch)."""

from __future__ import annotations

import argparse
import sys

from llmarch_lab.labs.cost.gateway.service import serve_router


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.cost.gateway")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-router", help="the router service (started by launch)")
    s.add_argument("--router", required=True)
    s.add_argument("--threshold", type=float, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--decisions", default="")
    s.add_argument("--parent-pid", type=int, default=0)
    a = ap.parse_args(argv)
    serve_router(a.router, a.threshold, a.port, a.decisions, a.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
