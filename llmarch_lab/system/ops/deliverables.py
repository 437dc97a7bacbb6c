"""The documents a recommendation ships with, written by `llmarch-lab system report` into
<report>/deliverables/ (and, with --docs DIR, into DIR for committing):

  ARCHITECTURE.md   the diagram, the choice and why (and why each runner-up lost), the parts as
                    deployed (from the bundle), the request path, what was not measured
  RUNBOOK.md        the bundle's runbook, then the newest alert drill's measured table: for each
                    alert, the fault that fired it, time to fire and to resolve
  CAPACITY.md       per-replica goodput at the SLOs, replicas and cost at peak, growth to 10x,
                    following the mean (HPA), and the end-to-end check's predicted vs measured
  architecture.svg  the diagram (when Graphviz ran)

Every number comes from the choice (MLflow runs it names) or from the runs it links; nothing is
typed in.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import yaml

from llmarch_lab import LabError

DRILL_RUN = "alert-drill"  # ops/report.py logs the drill under this run name (experiment `system`)


def _md(rows: list[dict], cols: list[str] | None = None) -> str:
    from llmarch_lab.common.report import markdown_rows

    return markdown_rows(rows, cols or list(rows[0])) if rows else "(none)"


def architecture(ch, s: dict, bcfg: dict, has_svg: bool) -> str:
    req, r = ch.req, ch.row()
    parts = [
        {"part": "engine", "what": f"{bcfg['engine']} serving {bcfg['model_file']}",
         "as deployed": f"{bcfg['replicas']}-{bcfg['max_replicas']} replicas, {bcfg['slots']} slot(s), "
                        f"{bcfg['threads']} threads, context {bcfg['ctx']}, {bcfg['cpu']} CPU, {bcfg['memory']}"},
        {"part": "gateway", "what": "LiteLLM proxy (OpenAI-compatible)",
         "as deployed": "per-key rpm / tpm / max-parallel limits and body checks (keys file), Prometheus callback, "
                        f"tokens priced at ${bcfg['usd_per_1m_tokens']:.4g} per 1M"},
        {"part": "guard", "what": f"guard service, injection detector {bcfg['guard']}" if bcfg["guard"] != "none"
         else "none", "as deployed": f"pre- and post-call hook in the gateway; PII config {bcfg['pii_config']}"
         if bcfg["guard"] != "none" else ""},
        {"part": "monitoring", "what": "Prometheus + Alertmanager",
         "as deployed": "scrapes engine, gateway and guard; SLO burn, error rate, queue, engine down, guard block-rate "
                        "rules (prometheus/alerts.yml); Grafana dashboard"},
        {"part": "autoscaling", "what": "Kubernetes HPA",
         "as deployed": "requests in flight per replica (recording rule llmarch_engine_inflight) against 0.8 x slots"},
    ]
    out = [f"# Architecture: {req.system}", "", req.description, "", f"**{s['verdict']}**", ""]
    out += ["![architecture](architecture.svg)", ""] if has_svg else ["(no diagram: Graphviz was missing)", ""]
    out += ["## The choice and why", "", f"Recommended on {r.hardware}: {r.system}.", ""]
    out += [f"- #{i} {ch.candidates.loc[i].system}: {why}" for i, why in ch.reasons.items()]
    out += ["", "## Parts as deployed (bundle/)", "", _md(parts, ["part", "what", "as deployed"]), "",
            "## Request path", "",
            "client -> gateway (key check and limits: 401 / 429; body checks: 400 / 413) -> guard input check "
            "(a block is answered by the gateway) -> engine (one of the replicas) -> guard output check "
            "-> client. Prometheus scrapes all three; Alertmanager routes the alerts (RUNBOOK.md).", "",
            "## Requirements", "", _md(s["requirements"], ["item", "value"]), "",
            "## Not measured, or weaker than it reads", ""]
    out += [f"- {x}" for x in s["risks"]]
    return "\n".join(out) + "\n"


def drill_table() -> tuple[list[dict], str]:
    """The newest alert drill's rows from MLflow ([] and why not, when there is none)."""
    from llmarch_lab.store import tracking

    runs = [r for r in tracking.search_many(["system"]) if r["name"] == DRILL_RUN]
    if not runs:
        return [], "No alert drill in the tracking store: run `llmarch-lab system drill`."
    try:
        df = tracking.load_csv(runs[0]["run_id"], "drill.csv", "drill table")
    except LabError as e:
        return [], str(e)
    rows = [{"fault": x.fault, "alert": x.alert, "fired": "yes" if x.fired else "NO",
             "to fire (s)": x.to_fire_s, "to resolve (s)": x.to_resolve_s, "drill for": x.drill_for,
             "production for": x.production_for} for x in df.itertuples()]
    return rows, f"MLflow run {runs[0]['run_id']} (experiment system, run {DRILL_RUN})"


def runbook(bundle_dir: Path) -> str:
    rows, source = drill_table()
    text = (bundle_dir / "RUNBOOK.md").read_text()
    text += ("\n## Measured: the alert drill\n\nEach alert above fired for real, with the bundle's expressions at "
             "drill timing (seconds-long windows; production adds its longer `for`), in a real Prometheus and "
             "Alertmanager against a real engine, guard and gateway. The drill runs its own small stack "
             "(`llmarch-lab system drill`: llama-server with SmolLM2-135M and 2 slots, the rules guard) and its own "
             "thresholds, so the times show that the rules and the alert path work, not how soon this system's "
             f"thresholds trip. Source: {source}\n\n")
    return text + (_md(rows) if rows else "") + "\n"


def capacity(ch, s: dict, ver: dict | None) -> str:
    req, r = ch.req, ch.row()
    w, hw = req.workload, next(h for h in req.hardware if h.name == r.hardware)
    g = float(r.goodput_rps_per_replica)
    out = [f"# Capacity and cost: {req.system}", "", f"**{s['verdict']}**", "",
           f"One replica ({r.system}) serves {g:.3g} req/s within the SLOs (measured: serving run "
           f"{r.serving_run}); sized for a peak of {w.peak_rps:g} req/s with {req.sizing.headroom:.0%} headroom on "
           f"{hw.name} at ${hw.usd_per_hour:g}/h, {req.sizing.hours_per_month:g} h/month.", "",
           "## Growth", ""]
    rows = []
    for k in (1, 2, 5, 10):
        n = max(1, math.ceil(k * w.peak_rps * (1 + req.sizing.headroom) / g))
        rows.append({"peak (x today)": f"{k}x: {k * w.peak_rps:g} req/s", "replicas": n,
                     "$/month sized for peak": f"{n * hw.usd_per_hour * req.sizing.hours_per_month:,.2f}",
                     "within max_replicas": "yes" if n <= req.sizing.max_replicas else
                     f"NO (max {req.sizing.max_replicas})"})
    out += [_md(rows), "", "Replicas = ceil(peak x (1 + headroom) / goodput per replica); linear in traffic as long "
            "as replicas do not share hardware.", "", "## Sized for peak vs following the mean", "",
            _md(s["projection"]), "", "## Predicted vs measured (the end-to-end check)", ""]
    if not ver or "table" not in ver:
        out.append("Not run." if not ver else f"Failed: {ver.get('error')}")
    else:
        from llmarch_lab.system.report_pages import by_guard_note, sweep_note, verify_table_md

        out += [f"{ver['requests']} requests ({ver.get('workload', 'synthetic')} prompts) at {ver['realised_rps']:.3g} req/s "
                f"(Poisson), {ver['errors']} errors"
                f"{', behind the guarded gateway' if ver['guarded'] else ''}.{by_guard_note(ver)}{sweep_note(ver)}", "",
                verify_table_md(ver)]
    return "\n".join(out) + "\n"


def write(ch, s: dict, ver: dict | None, report_dir: Path) -> Path:
    """Write the documents into report_dir/deliverables (the report's own folder, being built)."""
    if not ch.feasible:
        raise LabError("deliverables: no recommendation, nothing to document")
    out = report_dir / "deliverables"
    out.mkdir(exist_ok=True)
    bcfg = yaml.safe_load((report_dir / "bundle" / "bundle.yaml").read_text())
    svg = report_dir / "report_files" / "architecture.svg"
    if svg.exists():
        shutil.copy(svg, out / "architecture.svg")
    (out / "ARCHITECTURE.md").write_text(architecture(ch, s, bcfg, svg.exists()))
    (out / "RUNBOOK.md").write_text(runbook(report_dir / "bundle"))
    (out / "CAPACITY.md").write_text(capacity(ch, s, ver))
    return out
