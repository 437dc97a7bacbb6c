"""`python -m llmarch_lab.labs.guardrails.bias --model smollm2 --n 200`: the bias tables of one model."""

from __future__ import annotations

from typing import Sequence

from llmarch_lab.common.entry import one_line_errors
from llmarch_lab.labs.guardrails.bias.study import MODELS, SETS, BiasReport, run_bias


@one_line_errors
def main(argv: Sequence[str] | None = None) -> int:
    """BBQ, CrowS-Pairs and StereoSet metrics with 95% bootstrap intervals, published anchors, and the
    BBQ debiasing-prefix mitigation (chosen on a dev half, measured on the held-out half)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.bias", description=main.__doc__)
    ap.add_argument("--model", default="smollm2", help=f"one of {', '.join(MODELS)} or a full alias")
    ap.add_argument("--n", type=int, default=200, help="items per set (0 = all; BBQ: the annotated pool)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated subset of " + ",".join(SETS))
    ap.add_argument("--no-mitigation", action="store_true", help="skip the BBQ debiasing-prefix study")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--norm", default="char", choices=("char", "token", "sum"), help="BBQ option scoring")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the per-item score cache")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from llmarch_lab.llm.local import torch_threads

    with torch_threads(args.threads):
        rep = run_bias(args.model, args.n, args.seed, tuple(s for s in args.sets.split(",") if s),
                       mitigate=not args.no_mitigation, n_boot=args.boot, progress=not args.no_progress,
                       use_cache=not args.no_cache, norm=args.norm)
    print_report(rep)
    return 0


def _cell(v) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.1f}"
    return str(v)


def print_report(rep: BiasReport) -> None:
    from rich.console import Console

    from llmarch_lab.common.report import print_rows

    console = Console(width=160)
    rows = [{"set": r["set"], "metric": r["metric"], "value": _cell(r["value"]),
             "95% CI": f"[{_cell(r['lo'])}, {_cell(r['hi'])}]", "n": r["n"]} for r in rep.rows]
    print_rows(rows, f"bias of {rep.model} (n={rep.n_items or 'all'} per set, seed {rep.seed}, "
               f"{rep.seconds:.0f} s); % and BBQ bias x100", console, right=("value", "95% CI", "n"))
    for r in rep.rows:
        if r["anchor"]:
            console.print(f"[bold]{r['set']}.{r['metric']}[/bold] published: {r['anchor']}", highlight=False)
    m = rep.mitigation
    if m:
        dev = [{k: _cell(v) for k, v in r.items() if k != "text"} for r in m["dev"]]
        print_rows(dev, f"BBQ debiasing prefix, DEV half ({m['dev_n']} items): chosen = {m['chosen']} "
                   "(lowest |s_AMB| + |s_DIS|)", console)
        test = [{k: _cell(v) for k, v in r.items()} for r in m["test"]]
        print_rows(test, f"BBQ debiasing prefix, TEST half ({m['test_n']} items, never used to choose): "
                   "delta = prefix - none, paired 95% CI", console)
        for r in m["dev"]:
            console.print(f"  {r['prefix']}: {r['text']!r}", highlight=False)
        console.print(f"published: {m['anchor']}", highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
