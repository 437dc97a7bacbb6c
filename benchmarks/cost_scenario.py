"""Cost v2 measurements: every configuration of the study answers the same questions (resumable).

    .venv/bin/python benchmarks/cost_scenario.py --pubmedqa-n 200 --gsm8k-n 80     # every config, in order
    .venv/bin/python benchmarks/cost_scenario.py --only large-f16,small-q4km         # some of them
    .venv/bin/python benchmarks/cost_scenario.py --list                              # what is measured so far
    .venv/bin/python benchmarks/cost_scenario.py --timing 16,6                       # machine time per config (idle machine!)

Needs make model-qwen engine-llama-server engine-llamacpp (the quantizer). The samples are prefixes
of one seeded order per task, so raising --pubmedqa-n / --gsm8k-n measures only the new questions
(the study's target is 500 and 250). The cost is machine time per request, from the timing blocks
(--timing P,G: per configuration a fresh engine answers the first P PubMedQA and G GSM8K questions
again; configurations already timed are skipped unless --force): run those alone on the machine. The analysis is the cost lab's `scenario` part (experiments/cost_v2.yaml).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402,F401 - sets the offline environment first


def main(argv=None) -> int:
    from llmarch_lab import paths
    from llmarch_lab.labs.cost import outcomes
    from llmarch_lab.labs.cost.scenario import measure

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pubmedqa-n", type=int, default=120)
    ap.add_argument("--gsm8k-n", type=int, default=48)
    ap.add_argument("--only", default="", help="comma-separated config keys (default: all, in order)")
    ap.add_argument("--list", action="store_true", help="print what is measured so far and exit")
    ap.add_argument("--timing", default="", help="P,G: time each configuration on its first P PubMedQA and G GSM8K questions")
    ap.add_argument("--force", action="store_true", help="with --timing: time configurations already timed again")
    ap.add_argument("--plan", action="store_true", help="run the scenario part on what is measured, print its tables, log to MLflow")
    ap.add_argument("--replay", type=int, default=0, help="with --plan: replay this many trace requests through the recommended plan")
    ap.add_argument("--offline-share", type=float, default=0.3, help="with --plan: share of traffic that may go to offline batches")
    a = ap.parse_args(argv)
    if a.plan:
        return plan_main(a)
    try:
        timing = tuple(int(x) for x in a.timing.split(",")) if a.timing else ()
        if timing and (len(timing) != 2 or min(timing) < 0):
            raise ValueError
    except ValueError:
        raise SystemExit(f"--timing {a.timing!r}: give P,G, two counts such as 16,6") from None
    keys = [k for k in a.only.split(",") if k] or list(measure.CONFIGS)
    bad = [k for k in keys if k not in measure.CONFIGS]
    if bad:
        raise SystemExit(f"--only: unknown config {bad[0]!r}; known: {', '.join(measure.CONFIGS)}")
    share = {c.key: s for c, s in measure.STUDY}
    log_dir = paths.cache_dir() / "cost-outcomes" / "logs"
    compressor = None
    for key in keys:
        cfg = measure.CONFIGS[key]
        n_p, n_g = (max(1, round(n * share[key])) for n in (a.pubmedqa_n, a.gsm8k_n))
        if a.list:
            done = outcomes.cached(measure.store_key(cfg))
            by = {t: sum(1 for d in done.values() if d["task"] == t) for t in cfg.tasks}
            print(f"{key:18s} {by}  machine s/request: "
                  f"{ {t: round(v, 2) for t, v in measure.machine_seconds(measure.store_key(cfg)).items()} }")
            continue
        if cfg.compress != 1.0 and compressor is None:
            from llmarch_lab.labs.cost.scenario.compress import Compressor

            compressor = Compressor()
        t0 = time.time()
        if timing:
            if any(src == "timing" for _, src in measure.machine_seconds(measure.store_key(cfg), True).values()) and not a.force:
                print(f"{key}: timed already (--force to time again)")
                continue
            secs = measure.time_config(cfg, log_dir, *timing, compressor=compressor)
            print(f"{key}: machine s/request {({t: round(v, 2) for t, v in secs.items()})} "
                  f"(timing block, {time.time() - t0:.0f} s)", flush=True)
            continue
        df = measure.run(cfg, log_dir, n_p, n_g, compressor=compressor)
        acc = df.groupby("task")["correct"].mean().round(3).to_dict()
        print(f"{key}: {len(df)} answers {acc} in {time.time() - t0:.0f} s; machine s/request "
              f"{ {t: round(v, 2) for t, v in measure.machine_seconds(measure.store_key(cfg)).items()} }", flush=True)
    return 0


def plan_main(a) -> int:
    """The scenario part in this process (same code as the suite's run), its tables printed."""
    from llmarch_lab import LabError
    from llmarch_lab.labs.cost.lab import CostParams, run
    from llmarch_lab.labs.cost.scenario import measure
    from llmarch_lab.store import tracking

    try:
        p = CostParams(part="scenario", small_model=measure.SMALL, large_model=measure.LARGE, pubmedqa_n=a.pubmedqa_n,
                       gsm8k_n=a.gsm8k_n, max_tokens=320, offline_share=a.offline_share, replay_requests=a.replay,
                       n_boot=1000)
        lab_run = tracking.start(p, notebook="benchmarks/cost_scenario.py")
        res = run(p)
        lab_run.log_result(res)
        lab_run.close()
    except LabError as e:
        raise SystemExit(f"cost_scenario: {e}") from None
    fmt = dict(index=False, floatfmt=".3g")
    lv = res.tables["lever_table"]
    print("\n## Each configuration against the baseline's answers (large F16, same questions)\n")
    print(lv.drop(columns=["model"]).to_markdown(**fmt))
    if "router_table" in res.tables:
        print("\n## The plan's router, out of fold (RouteLLM's evaluation: 0.5B vs 1.5B F16)\n")
        print(res.tables["router_table"].to_markdown(**fmt))
    print("\n## GSM8K prompt style (chosen on dev)\n")
    print(res.tables["style_table"].to_markdown(**fmt))
    t = res.tables["plan_table"]
    cols = ["plan", "composed", "cost_s_per_request", "saving_pct", "saving_ci_low", "saving_ci_high", "quality",
            "rel_loss_pct", "loss_ci_low", "loss_ci_high", "share_small", "share_cache", "pareto"]
    print(f"\n## Plans: every lever alone, and the Pareto front ({len(t)} plans in all)\n")
    print(t[(t["n_levers"] <= 1) | t["pareto"]][cols].to_markdown(**fmt))
    print("\n## Waterfall of the recommended plan\n")
    print(res.tables["waterfall"].to_markdown(**fmt))
    if "replay_vs_plan" in res.tables:
        print(f"\n## Replay: {res.tags['cost.replay']}\n")
        print(res.tables["replay_vs_plan"].to_markdown(**fmt))
    print(f"\nrecommended: {res.tags['cost.recommended']} ({res.tags['cost.recommendation_basis']}); "
          f"target met: {res.tags['cost.target_met']}; missing: {res.tags['cost.scenario_missing']}")
    print(f"metrics: { {k: round(v, 3) for k, v in res.metrics.items()} }")
    print(f"logged to MLflow run {lab_run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
