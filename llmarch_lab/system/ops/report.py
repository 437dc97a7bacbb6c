"""`llmarch-lab system drill`: run the alert drill, write its table, log it to MLflow.

    res = run_and_log(DrillConfig(), out)   # out/drill.csv, out/drill.md, out/monitoring/, logs; MLflow run

The folder is written beside `out` and renamed at the end (a killed drill leaves the previous one
or none). MLflow (system/report.log_folder_run): experiment `system`, run name `alert-drill`, the config as params, per alert
latency.alert_<name>_fire_s / _resolve_s, the counts, the gateway's spend; the folder as artifacts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.system.ops import drill
from llmarch_lab.system.report import default_dir, log_folder_run

COLUMNS = ["fault", "alert", "expected", "fired", "to_fire_s", "to_resolve_s", "fault_s", "drill_for",
           "production_for", "note"]


def metrics(out: dict) -> dict[str, float]:
    t = out["table"]
    m: dict[str, float] = {}
    for r in t[t.fired & t.expected].itertuples():
        key = r.alert.lower()
        m[f"latency.alert_{key}_fire_s"] = float(r.to_fire_s)
        if r.to_resolve_s == r.to_resolve_s and r.to_resolve_s is not None:
            m[f"latency.alert_{key}_resolve_s"] = float(r.to_resolve_s)
    exp = t[t.expected]
    m["count.drill_expected"] = float(len(exp))
    m["count.drill_fired"] = float(exp.fired.sum())
    m["count.drill_missed"] = float((~exp.fired).sum())
    m["count.drill_unexpected"] = float((t.fired & ~t.expected).sum())
    m["count.drill_baseline_alerts"] = float(len(out["baseline_alerts"]))
    spend = out["counters"].get("gateway spend (USD)")
    if spend is not None:
        m["cost.drill_spend_usd"] = float(spend)
    return m


def markdown(out: dict) -> str:
    t = out["table"].reindex(columns=COLUMNS)
    lines = ["# Alert drill", "",
             f"Timing: scrape {out['timing']['scrape']}, rate window {out['timing']['window']}, every `for` "
             f"{out['timing']['EngineDown']} (production: bundle_files.PRODUCTION). Wall time {out['wall_s']:.0f} s.",
             f"Quiet baseline (steady traffic only): {', '.join(out['baseline_alerts']) or 'no alert fired'}.",
             f"Steady traffic outcomes: {json.dumps(out['steady'])}.", "",
             t.to_markdown(index=False), "", "Counters read back from Prometheus at the end:", ""]
    lines += [f"- {k}: {v:g}" if v is not None else f"- {k}: (no sample)" for k, v in out["counters"].items()]
    return "\n".join(lines) + "\n"


def run_and_log(cfg: drill.DrillConfig | None = None, out_dir=None, log: bool = True, progress: bool = True) -> dict:
    cfg = cfg or drill.DrillConfig()
    out_dir = Path(out_dir) if out_dir else default_dir("alert-drill")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # before anything starts: an unwritable --out is one line, not a traceback after the drill
        tmp.mkdir(parents=True)
    except OSError as e:
        raise LabError(f"--out {out_dir}: cannot create {tmp}: {e.strerror}") from None
    try:
        res = drill.run(cfg, tmp, progress=progress)
        res["table"].reindex(columns=COLUMNS).to_csv(tmp / "drill.csv", index=False)
        (tmp / "drill.md").write_text(markdown(res))
        (tmp / "drill.json").write_text(json.dumps({k: v for k, v in res.items() if k != "table"}, indent=1, default=str))
    except BaseException:  # a failed or interrupted drill leaves the previous folder, or none
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    res["folder"] = out_dir
    res["metrics"] = metrics(res)
    if log:
        res["run_id"] = _log(cfg, res, out_dir)
    return res


def _log(cfg, res: dict, folder: Path) -> str:
    return log_folder_run("alert-drill", {"lab": "system", "llmarch.name": "alert-drill",
                                          "drill.ok": str(res["ok"]).lower()},
                          asdict(cfg), res["metrics"], folder)
