"""Predict a saved end-to-end check again, without running it: the slot model's on-trace prediction
(verify.predict_on_trace) from the report's own files, against what the check measured.

    .venv/bin/python benchmarks/system_check_replay.py experiments/system/support_assistant.yaml REPORT_DIR

REPORT_DIR is a `system report --out` folder (or the report's MLflow artifacts): it needs
report_files/verify_requests.csv and report_files/verify_engine_sweep.csv (llama-server checks since
2026-12-07). The serving run and the guard are the requirements' recommendation, read from the
store as `system report` does. For re-analysing a check after a change to the model, not a check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmarch_lab.run import bench  # noqa: E402,F401 - sets the offline environment first

METRICS = (("TTFT p50 (ms)", "ttft_ms", 50), ("TTFT p99 (ms)", "ttft_ms", 99), ("TPOT p50 (ms)", "tpot_ms", 50),
           ("e2e p99 (ms)", "e2e_ms", 99))


def main(argv=None) -> int:
    import numpy as np
    import pandas as pd

    from llmarch_lab import LabError, registry
    from llmarch_lab.system import chooser, records, requirements, verify

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("requirements")
    ap.add_argument("report_dir")
    a = ap.parse_args(argv)
    files = Path(a.report_dir) / "report_files"
    try:
        req = requirements.load(a.requirements)
        for f in ("verify_requests.csv", "verify_engine_sweep.csv"):
            if not (files / f).is_file():
                raise LabError(f"{files / f}: not found (a llama-server check's report folder has it)")
        recs, sweep = pd.read_csv(files / "verify_requests.csv"), pd.read_csv(files / "verify_engine_sweep.csv")
        ch = chooser.choose(req, records.components(req))
        if not ch.feasible:
            raise LabError(f"{a.requirements}: no feasible system, so no check to replay")
        row = ch.row()
        serving = next(s for s in ch.comps.serving if s.run_id == row.serving_run)
        guard = next((g for g in ch.comps.guards if g.detector == row.guard), records.Guard("none"))
    except LabError as e:
        raise SystemExit(f"system_check_replay: {e}") from None
    ok = recs[recs.error.isna() & recs.e2e_ms.notna()]
    canned = set()
    if guard.detector != "none" and req.verify.guard:
        cfg = registry.service("guardrails.default_stack")(injection_detector=guard.detector, pii_config=req.safety.pii_config)
        canned = verify.canned_replies(cfg)
    else:
        guard = records.Guard("none")
    eng = ok[~ok.text.fillna("").astype(str).str.strip().isin(canned)]
    pred = verify.predict_on_trace(serving, guard, sweep, eng, len(ok))
    span_s = ((ok.start_ms + ok.e2e_ms).max() - ok.start_ms.min()) / 1000.0
    rows = [{"metric": label, "on trace": pred[f"{k}_p{q}"], "measured": float(np.percentile(eng[k].dropna(), q))}
            for label, k, q in METRICS]
    rows += [{"metric": "throughput (req/s)", "on trace": pred["req_per_s"], "measured": len(ok) / span_s},
             {"metric": "output tokens/s", "on trace": pred["output_tok_per_s"], "measured": ok.output_tokens.sum() / span_s}]
    t = pd.DataFrame(rows)
    t["error_pct"] = 100.0 * (t["measured"] - t["on trace"]) / t["on trace"]
    print(f"{a.report_dir}: {len(ok)} answered, {len(eng)} by the engine; step cost {pred['step_cost']}\n")
    print(t.to_markdown(index=False, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
