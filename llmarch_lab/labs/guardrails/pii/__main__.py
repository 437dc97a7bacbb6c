"""`python -m llmarch_lab.labs.guardrails.pii`: engine x configuration x threshold on the test split."""

from __future__ import annotations

from typing import Sequence

from llmarch_lab.labs.guardrails.pii.config import configs
from llmarch_lab.labs.guardrails.pii.evaluate import choose_threshold, evaluate, split

# ------------------------------------------------------------------------------------ the table

def main(argv: Sequence[str] | None = None) -> int:
    """Print engine x config x threshold on the TEST split, thresholds chosen on TRAIN."""
    import argparse

    from llmarch_lab.assets import datasets
    from llmarch_lab.common import stats

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.pii", description=main.__doc__)
    ap.add_argument("--thresholds", default="0.3,0.4,0.5,0.6")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N records of each split")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    grid = [float(x) for x in args.thresholds.split(",")]
    train, test = split(datasets.pii_synth())
    if args.limit:
        train, test = train[:args.limit], test[:args.limit]
    progress = not args.no_progress
    seen = {r.get("template_id") for r in train}
    print(f"synth_dataset_v2: train {len(train)}, test {len(test)} records (split seed 0, test 30%); "
          f"{sum(r.get('template_id') in seen for r in test)} test records share a template with train")
    rows, per_entity = [], {}
    for cfg in configs().values():
        chosen, train_f2 = choose_threshold(train, cfg, grid, progress)
        for t in grid:
            ev = evaluate(test, cfg.with_threshold(t), progress=progress)
            pct = stats.percentiles(ev.latencies_ms, "ms")
            rows.append({"engine": cfg.engine, "config": cfg.name, "threshold": t, "chosen": "*" if t == chosen else "",
                         "train_f2": train_f2[t], "P": ev.precision, "R": ev.recall, "F2": ev.f2,
                         "p50_ms": pct["ms_p50"], "p95_ms": pct["ms_p95"]})
            if t == chosen:
                per_entity[f"{cfg.engine}/{cfg.name}@{t:g}"] = ev.per_entity
    _print_table("TEST split, overall (type-agnostic PII spans, presidio-evaluator SpanEvaluator, IoU 0.9, F2); "
                 "* = threshold chosen on train", rows)
    for name, df in per_entity.items():
        _print_table(f"TEST per entity: {name}", df.to_dict("records"))
    return 0


def _print_table(title: str, rows: list[dict]) -> None:
    from rich.console import Console

    from llmarch_lab.common.report import print_rows

    right = tuple(c for c in (rows[0] if rows else {}) if c not in ("engine", "config", "entity", "chosen"))
    print_rows(rows, title, Console(width=160), floats=".3f", right=right)


if __name__ == "__main__":
    raise SystemExit(main())
