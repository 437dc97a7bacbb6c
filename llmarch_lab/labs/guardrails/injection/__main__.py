"""`python -m llmarch_lab.labs.guardrails.injection`: the cross-validated detector table."""

from __future__ import annotations

import time

from llmarch_lab.common.report import frame_markdown
from llmarch_lab.labs.guardrails.injection.base import DETECTORS
from llmarch_lab.labs.guardrails.injection.evaluate import table


def main(argv=None) -> int:
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.injection",
                                 description="Cross-validated prompt-injection detector table on data/prompt_injections/train.parquet")
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated names")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-n", type=int, default=100, help="texts timed per detector (stratified sample), one at a time, one thread")
    ap.add_argument("--repeats", type=int, default=3, help="time each text this many times, keep the fastest")
    ap.add_argument("--max-escalate", type=float, default=0.05, help="cascade: max fraction of texts sent to nanoguard")
    ap.add_argument("--backends", default="auto", help="minilm encoder backends to compare, e.g. onnx,torch")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n.strip() for n in a.detectors.split(",") if n.strip()]
    for n in names:
        if n not in DETECTORS:
            print(f"error: unknown injection detector {n!r}: valid are {', '.join(DETECTORS)}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    tab, sha = table(names, a.folds, a.seed, a.latency_n, a.max_escalate, [b.strip() for b in a.backends.split(",")], a.repeats)
    print(f"data/prompt_injections/train.parquet sha256 {sha[:16]}..., {a.folds}-fold stratified CV seed {a.seed}; "
          f"latency: {a.latency_n} texts, one at a time, 1 thread, fastest of {a.repeats}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start -> {os.getloadavg()[0]:.1f} at end")
    print(frame_markdown(tab, ".3f"))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
