"""`llmarch-lab system report REQUIREMENTS.yaml [--out DIR]`: choose, verify, bundle, report.

    out = report.build("experiments/system/support_assistant.yaml", out_dir="/tmp/support")
    out["html"], out["md"], out["bundle"], out["run_id"]

Writes into DIR (atomically: a temporary folder renamed at the end, so a killed run leaves the
previous report or none, never half of one): report.html (DIR default mlruns/reports/<system>; one self-contained file, plots inline
as PNG data, links to the MLflow run behind every number), report.md (the Markdown twin, plots in
report_files/), bundle/ (system/bundle.py), deliverables/ (ARCHITECTURE.md, RUNBOOK.md,
CAPACITY.md: ops/deliverables.py) and screenshot.png when asked. The same files are
logged to MLflow (experiment `system`, run name = the system's name, tag lab=system) with the
headline metrics. The plots, tables and pages themselves: report_pages.py.
"""

from __future__ import annotations

from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.common.files import OUTPUT_MARKER, atomic_dir, check_output_dir
from llmarch_lab.store import tracking
from llmarch_lab.system import bundle, chooser, records, report_pages, requirements
from llmarch_lab.system.ops import deliverables
from llmarch_lab.system.render import NO_DOT, diagram, take_screenshot

EXPERIMENT = "system"


def build(req_path: str | Path, out_dir: str | Path | None = None, verify: bool | None = None,
          mlflow_ui: str = "http://127.0.0.1:5000", screenshot: bool = False, log: bool = True,
          progress: bool = True, docs_dir: str | Path | None = None) -> dict:
    """The whole report; returns {"html", "md", "bundle", "dir", "choice", "verify", "validation", "run_id"}.
    docs_dir: also copy deliverables/ (ops/deliverables.py) there, replacing what it held."""
    import pandas as pd

    req = requirements.load(req_path)
    out_dir = Path(out_dir) if out_dir else default_dir(req.system)
    check_output_dir(out_dir, {"the requirements file": req_path}, ours=("report.html",))
    if docs_dir:
        check_output_dir(docs_dir, {"the requirements file": req_path, "the report folder": out_dir}, flag="--docs",
                         ours=("ARCHITECTURE.md", "CAPACITY.md"))
    comps = records.components(req)
    ch = chooser.choose(req, comps)
    with atomic_dir(out_dir) as tmp:
        (tmp / OUTPUT_MARKER).write_text("llmarch-lab system report\n")
        ver, validation = None, {}
        do_verify = req.verify.enabled if verify is None else verify
        if ch.feasible:
            bcfg = bundle.config_from(ch)
            bundle.write(bcfg, tmp / "bundle")
            validation = bundle.validate(tmp / "bundle")
            if do_verify:
                _say(progress, f"verifying {ch.row().system} end to end ...")
                ver = _verify(ch, tmp / "verify")
                live = {k: v for k, v in (ver.get("scrapes") or {}).items() if k in ("engine", "gateway") and v}
                if live:  # the bundle's metric names against what the running parts export
                    validation.update(bundle.metric_names_check(tmp / "bundle", live))
        figs = report_pages.plots(ch)
        dot_src, svg = diagram(ch)
        (tmp / "report_files").mkdir()
        for k, b in figs.items():
            (tmp / "report_files" / f"{k}.png").write_bytes(b)
        (tmp / "report_files" / "architecture.dot").write_text(dot_src)
        if svg is not None:
            (tmp / "report_files" / "architecture.svg").write_text(svg)
        else:
            _say(progress, NO_DOT)
        if ver is not None and isinstance(ver.get("records"), pd.DataFrame):
            ver["records"].to_csv(tmp / "report_files" / "verify_requests.csv", index=False)
            if len(ver.get("sweep_records", ())):
                ver["sweep_records"].to_csv(tmp / "report_files" / "verify_engine_sweep.csv", index=False)
            for who in ("engine", "gateway"):
                if (ver.get("scrapes") or {}).get(who):
                    (tmp / "report_files" / f"{who}_metrics.txt").write_text(ver["scrapes"][who])
        sections = report_pages.sections(ch, ver, validation, mlflow_ui)
        (tmp / "report.html").write_text(report_pages.page_html(ch, sections, figs, svg))
        md = report_pages.page_markdown(ch, sections)
        (tmp / "report.md").write_text(md if svg is not None else md.replace(
            "![architecture](report_files/architecture.svg)", f"_{NO_DOT}_"))
        if ch.feasible:
            deliverables.write(ch, sections, ver, tmp)
        if screenshot:
            take_screenshot(tmp / "report.html", tmp / "screenshot.png")
        run_id = _log(ch, ver, validation, tmp) if log else ""
    if docs_dir and ch.feasible:
        import shutil

        with atomic_dir(Path(docs_dir)) as dtmp:
            shutil.copytree(out_dir / "deliverables", dtmp, dirs_exist_ok=True)
    return {"dir": out_dir, "html": out_dir / "report.html", "md": out_dir / "report.md",
            "bundle": out_dir / "bundle" if ch.feasible else None, "choice": ch, "verify": ver,
            "validation": validation, "run_id": run_id}


def default_dir(system: str) -> Path:
    """reports/<system> beside a sqlite store (mlruns/reports/<system> for the default store,
    ignored by git); mlruns/reports/<system> for a server store."""
    db = paths.sqlite_path(paths.tracking_uri())
    if db is not None:
        return db.parent / "reports" / system
    return paths.mlruns_dir() / "reports" / system


def _say(progress: bool, msg: str) -> None:
    if progress:
        import sys

        print(msg, file=sys.stderr, flush=True)


def _verify(ch, folder: Path) -> dict:
    from llmarch_lab.system import verify

    try:
        return verify.run(ch, folder)
    except LabError as e:
        return {"error": str(e)}


def headline_metrics(ch, ver, validation) -> dict[str, float]:
    """The report's metrics on the results schema (the MLflow run's, and the notebook's)."""
    m = {"count.system_candidates": float(len(ch.candidates)), "count.system_feasible": float(ch.candidates.feasible.sum())}
    if ch.feasible:
        r = ch.row()
        m.update({"cost.system_usd_per_month": float(r.usd_per_month),
                  "cost.system_usd_per_1m_output_tokens": float(r.usd_per_1m_output_tokens),
                  "count.system_replicas": float(r.replicas)})
    if ver and "table" in ver:
        for _, t in ver["table"].iterrows():
            if t.error_pct == t.error_pct:
                key = t.metric.split(" (")[0].lower().replace(" ", "_").replace("/", "_")
                m[f"errors.verify_{key}_abs_error_pct"] = abs(float(t.error_pct))
    m["count.system_checks_failed"] = float(sum(not v[0] for v in validation.values()))
    return m


def _log(ch, ver, validation, folder: Path) -> str:
    """One MLflow run per report: params (requirements), headline metrics, the whole folder."""
    req = ch.req
    tags = {"lab": "system", "llmarch.name": req.system, "system.feasible": str(ch.feasible).lower(),
            "system.binding": ch.binding}
    if ch.feasible:
        tags["system.recommended"] = ch.row().system
    params = tracking.flatten(req.model_dump(mode="json", exclude={"path", "hardware", "quality"}))
    return log_folder_run(req.system, tags, params, headline_metrics(ch, ver, validation), folder)


def log_folder_run(run_name: str, tags: dict, params: dict, metrics: dict, folder: Path) -> str:
    """One FINISHED MLflow run in experiment `system`: tags (plus the environment's), params (the
    first 200, values cut at 500 characters), schema-checked metrics, `folder` as artifacts; a
    failure marks the run FAILED. Shared by the report and the alert drill (ops/report.py)."""
    from llmarch_lab import schema

    c = tracking.client(paths.tracking_uri(), create=True)
    exp = tracking.ensure_experiment(EXPERIMENT)
    rid = c.create_run(exp, run_name=run_name, tags={**tags, **tracking.environment_tags()}).info.run_id
    try:
        for k, v in list(params.items())[:200]:
            c.log_param(rid, k, str(v)[:500])
        for k, v in metrics.items():
            schema.check(k)
            c.log_metric(rid, k, v)
        c.log_artifacts(rid, str(folder))
        c.set_terminated(rid, "FINISHED")
    except BaseException:
        c.set_terminated(rid, "FAILED")
        raise
    return rid


def choose_only(req_path):
    """The candidates as a common.report.Report (the console view of `llmarch-lab system choose`)."""
    from llmarch_lab.common.report import Report

    req = requirements.load(req_path)
    ch = chooser.choose(req, records.components(req))
    cols = ["system", "replicas", "goodput_rps_per_replica", "ttft_ms_p99", "tpot_ms_p50", "usd_per_month",
            "quality", "quality_how", "feasible", "pareto"]
    table = ch.candidates[cols].copy()
    table["verdict"] = [ch.reasons.get(i, "") for i in table.index]
    note = (f"recommended: {ch.row().system}" if ch.feasible else
            f"infeasible: binding constraint {ch.binding}; nearest: {ch.candidates.loc[ch.nearest].system}")
    return Report(f"system {req.system}: candidates", table,
                  directions={"usd_per_month": "lower", "ttft_ms_p99": "lower", "quality": "higher",
                              "goodput_rps_per_replica": "higher"}, notes=[note])
