"""The system chooser as a lab (notebook 90_system): one run = one requirements file.

The run writes the whole report folder (report.html, report.md, bundle/) to `out_dir` and logs
the same into the notebook's MLflow run (texts report.html, report.md, bundle/*), with the
candidates and the end-to-end table as artifact tables. `llmarch-lab system report` does the
same from the command line into its own run (experiment `system`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from llmarch_lab.config import LabParams
from llmarch_lab.results import Result


class SystemParams(LabParams):
    lab = "system"
    key_metrics = ("cost.system_usd_per_month", "count.system_replicas", "count.system_feasible",
                   "errors.verify_ttft_p50_abs_error_pct", "count.system_checks_failed")

    requirements: str = Field("experiments/system/quickstart.yaml", min_length=1,
                              description="Requirements file (experiments/system/*.yaml), relative to the repository or absolute.")
    verify: bool = Field(False, description="Start the chosen system and check it end to end (minutes: an engine, maybe a gateway).")
    out_dir: str = Field("", description="Report folder ('' = mlruns/reports/<system>).")
    mlflow_ui: str = Field("http://127.0.0.1:5000", description="MLflow UI the report's links point to.")


def _path(p: str) -> Path:
    from llmarch_lab import paths

    q = Path(p).expanduser()
    return q if q.is_absolute() else paths.home() / q


def run(p: SystemParams) -> Result:
    from llmarch_lab.system import report

    req_path = _path(p.requirements)
    from llmarch_lab.system import requirements

    req = requirements.load(req_path)
    out = report.build(req_path, _path(p.out_dir) if p.out_dir else report.default_dir(req.system),
                       verify=p.verify, mlflow_ui=p.mlflow_ui, log=False, progress=False)
    ch = out["choice"]
    res = Result(metrics=report.headline_metrics(ch, out["verify"], out["validation"]),
                 tags={"system.name": req.system, "system.feasible": str(ch.feasible).lower(),
                       "system.binding": ch.binding, "system.report_dir": str(out["dir"])})
    if ch.feasible:
        res.tags["system.recommended"] = ch.row().system
    # Provenance: the data files (sha256 tags) behind the component runs this choice read; the
    # chooser itself opens no dataset.
    used = {v for c in ch.candidates.columns if c.endswith("_run") or c.startswith("guard_") and c.endswith("run")
            for v in ch.candidates[c].dropna().astype(str) if v}
    for r in ch.comps.runs:
        if r["run_id"] in used:
            res.tags.update({k: v for k, v in r["tags"].items() if k.startswith("data.")})
    res.tables["candidates"] = ch.candidates
    if out["verify"] and "table" in out["verify"]:
        res.tables["verify"] = out["verify"]["table"]
    res.texts["report.html"] = out["html"].read_text()
    res.texts["report.md"] = out["md"].read_text()
    if out["bundle"] is not None:
        for f in sorted(out["bundle"].rglob("*")):
            if f.is_file():
                res.texts[f"bundle/{f.relative_to(out['bundle'])}"] = f.read_text()
    return res


def report(suite: str):
    from llmarch_lab.common.report import Report, directions_for
    from llmarch_lab.store.tables import runs_table

    metrics = {"usd_per_month": "cost.system_usd_per_month", "replicas": "count.system_replicas",
               "feasible_candidates": "count.system_feasible", "ttft_p50_err_pct": "errors.verify_ttft_p50_abs_error_pct",
               "checks_failed": "count.system_checks_failed"}
    table = runs_table(suite, "system", ["requirements", "verify"], metrics)
    return Report(f"system choices of suite {suite}", table, directions=directions_for(metrics))


def html_view(result: Result):
    """The run's HTML report as a notebook display object (IPython's HTML)."""
    from IPython.display import HTML

    return HTML(result.texts["report.html"])
