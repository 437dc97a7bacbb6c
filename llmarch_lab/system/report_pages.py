"""The report's content: the Pareto plots, every table as rows (sections, shared by both pages), and
the self-contained HTML page and its Markdown twin built from them (report.py writes and logs them).
"""

from __future__ import annotations

import base64
import html
import io
import time

from llmarch_lab.common.report import html_rows, markdown_rows
from llmarch_lab.system import chooser
from llmarch_lab.system.bundle_files import VERIFIED
from llmarch_lab.system.records import model_label
from llmarch_lab.system.render import NO_DOT


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(ch) -> dict[str, bytes]:
    """Pareto plots: cost vs quality and cost vs TTFT p99, feasible / infeasible / front / chosen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = ch.candidates
    qname = ch.req.quality[0].name if ch.req.quality else "quality"
    out = {}
    for key, (ycol, ylabel) in {"pareto_quality": ("quality", qname), "pareto_latency": ("ttft_ms_p99", "TTFT p99 at peak (ms)")}.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        d = df[df[ycol].notna() & df.usd_per_month.notna()]
        for feas, style in ((False, dict(c="#bbbbbb", marker="x", label="infeasible")),
                            (True, dict(c="#1f77b4", marker="o", label="feasible"))):
            part = d[d.feasible == feas]
            if len(part):
                ax.scatter(part.usd_per_month, part[ycol], s=46, **style)
        front = d[d.pareto]
        if len(front):
            f = front.sort_values("usd_per_month")
            ax.plot(f.usd_per_month, f[ycol], "--", c="#1f77b4", lw=1, label="Pareto front (feasible)")
        if ch.recommended is not None and ch.recommended in d.index:
            r = d.loc[ch.recommended]
            ax.scatter([r.usd_per_month], [r[ycol]], s=260, marker="*", c="#d62728", zorder=5, label="recommended")
        if ch.nearest is not None and ch.nearest in d.index:
            r = d.loc[ch.nearest]
            ax.scatter([r.usd_per_month], [r[ycol]], s=200, marker="D", facecolors="none", edgecolors="#d62728",
                       zorder=5, label="nearest (infeasible)")
        ax.axvline(ch.req.budget_usd_month, c="#2ca02c", lw=1, label=f"budget ${ch.req.budget_usd_month:g}")
        if ycol == "quality" and ch.req.quality:
            ax.axhline(ch.req.quality[0].bound(), c="#ff7f0e", lw=1, label=f"floor {ch.req.quality[0].bound():g}")
        if ycol == "ttft_ms_p99" and ch.req.slos.ttft_ms_p99:
            ax.axhline(ch.req.slos.ttft_ms_p99, c="#ff7f0e", lw=1, label=f"SLO {ch.req.slos.ttft_ms_p99:g} ms")
        for _, r in d.iterrows():
            ax.annotate(f"{model_label(r.model)[:22]}\n{r.guard}", (r.usd_per_month, r[ycol]), fontsize=6,
                        xytext=(4, 3), textcoords="offset points", color="#555555")
        ax.set_xlabel("cost ($/month, sized for peak)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{'cost vs ' + qname if ycol == 'quality' else 'cost vs TTFT p99'}: {len(d)} candidates")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        out[key] = _png(fig)
    return out


def _link(ui: str, comps, run_id: str, text: str | None = None) -> str:
    if not run_id:
        return "-"
    exp = next((r["experiment"] for r in comps.runs if r["run_id"] == run_id), None)
    eid = comps.experiments.get(exp, "0")
    return f'<a href="{ui}/#/experiments/{eid}/runs/{run_id}">{html.escape(text or run_id[:8])}</a>'


CSS = """body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:4px}.verdict{font-size:1.15em;padding:10px 14px;border-radius:6px;margin:10px 0}
.ok{background:#e7f5e7;border:1px solid #7bc47b}.bad{background:#fdecea;border:1px solid #e08a80}
table{border-collapse:collapse;font-size:12px;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.plots img{width:48%;min-width:420px;margin-right:1%}nav a{margin-right:12px}
.note{color:#555;font-size:12px}svg{max-width:100%;height:auto}"""


def sections(ch, ver, validation, ui) -> dict:
    """Every table of the report as rows (shared by the HTML and the Markdown)."""
    req, df = ch.req, ch.candidates
    s: dict = {}
    s["requirements"] = _requirement_rows(req)
    s["candidates"] = _candidate_rows(ch, ui)
    s["candidate_cols"] = (["#", "system", "replicas", "goodput/replica (req/s)", "TTFT p50", "TTFT p99", "TPOT p50",
                            "e2e p99", "$/month", "$/1M out tok"]
                           + [c for f in req.quality for c in (f.name, f"{f.name} (how)")]
                           + ["feasible", "pareto", "verdict"])
    s["link_cols"] = ["#", "system", "serving run"] + [f"{f.name} run" for f in req.quality] + ["guard runs"]
    if ch.feasible:
        r = ch.row()
        s["verdict"] = (f"Recommended: {r.system}: {int(r.replicas)} replica(s), ${r.usd_per_month:,.2f}/month "
                        f"(${r.usd_per_1m_output_tokens:,.2f} per 1M output tokens at the mean load), "
                        f"TTFT p99 {r.ttft_ms_p99:,.0f} ms at peak.")
    else:
        n = df.loc[ch.nearest]
        s["verdict"] = (f"INFEASIBLE: no candidate meets the requirements. Binding constraint: {ch.binding}. "
                        f"Nearest candidate: {n.system}, which fails on: {n.violations}.")
    s["projection"] = _projection_rows(ch)
    s["verify"] = ver
    s["validation"] = [{"check": k, "ok": "ok" if v[0] else "FAILED", "detail": v[1]} for k, v in validation.items()]
    s["risks"] = _risks(ch, ver)
    return s


def _requirement_rows(req) -> list[dict]:
    w, sl = req.workload, req.slos
    return [
        {"item": "workload", "value": f"peak {w.peak_rps:g} req/s, mean {w.mean_rps:g} req/s, "
                                      f"{w.prompt_tokens} prompt + {w.output_tokens} output tokens"},
        {"item": "SLOs", "value": ", ".join(f"{k} <= {v:g}" for k, v in sl.latency_items().items())
                                  + f", error rate <= {sl.error_rate:g}"},
        *[{"item": f"quality: {f.name}", "value": f"{'>=' if f.min is not None else '<='} {f.bound():g} ({f.belongs_to()})"}
          for f in req.quality],
        {"item": "mandatory guards", "value": ", ".join(req.safety.guards) or "none"},
        {"item": "budget", "value": f"${req.budget_usd_month:,.2f}/month"},
        {"item": "sizing", "value": f"headroom {req.sizing.headroom:g}, at most {req.sizing.max_replicas} replicas, "
                                    f"{req.sizing.hours_per_month:g} h/month"},
        *[{"item": f"hardware {h.name}", "value": f"${h.usd_per_hour:g}/h ({h.kind}{', measured here' if h.measured_here else ', projection only'}); "
                                                  f"source: {h.source} ({h.date})"} for h in req.hardware],
    ]


def _candidate_rows(ch, ui) -> list[dict]:
    req, df = ch.req, ch.candidates
    cand = []
    for i, r in df.iterrows():
        row = {"#": i, "system": r.system, "replicas": r.replicas, "goodput/replica (req/s)": r.goodput_rps_per_replica,
               "TTFT p50": r.ttft_ms_p50, "TTFT p99": r.ttft_ms_p99, "TPOT p50": r.tpot_ms_p50, "e2e p99": r.e2e_ms_p99,
               "$/month": r.usd_per_month, "$/1M out tok": r.usd_per_1m_output_tokens, "feasible": "yes" if r.feasible else "no",
               "pareto": "yes" if r.pareto else "", "verdict": ch.reasons.get(i, ""),
               "serving run": _link(ui, ch.comps, r.serving_run)}
        for k, f in enumerate(req.quality):
            row[f.name] = r.get(f"q{k}")
            row[f"{f.name} (how)"] = r.get(f"q{k}_how")
            row[f"{f.name} run"] = _link(ui, ch.comps, r.get(f"q{k}_run") or "")
        if r.guard != "none":
            row["guard runs"] = (_link(ui, ch.comps, r.guard_f1_run, "quality") + " " +
                                 _link(ui, ch.comps, r.guard_latency_run, "latency"))
        cand.append(row)
    return cand


def _projection_rows(ch) -> list[dict]:
    """Cost projection: sized for peak all month, and what an autoscaler following the mean would pay."""
    req, df = ch.req, ch.candidates
    w = req.workload
    proj = []
    for _, r in df[df.feasible | (df.index == (ch.nearest if ch.nearest is not None else -1))].iterrows():
        if not r.replicas or r.replicas != r.replicas or not r.goodput_rps_per_replica > 0:
            continue  # no level met the SLOs (the nearest infeasible candidate): nothing to project
        hw = next(h for h in req.hardware if h.name == r.hardware)
        mean_reps = max(1, -(-w.mean_rps * (1 + req.sizing.headroom) // r.goodput_rps_per_replica))
        proj.append({"system": r.system, "replicas at peak": r.replicas, "$/month sized for peak": r.usd_per_month,
                     "replicas at mean": int(mean_reps),
                     "$/month following the mean (HPA)": mean_reps * hw.usd_per_hour * req.sizing.hours_per_month,
                     "$/1M tokens (in+out)": r.usd_per_1m_tokens})
    return proj


def _risks(ch, ver) -> list[str]:
    """Risks and open questions, from what the data says."""
    req, df = ch.req, ch.candidates
    risks = []
    for h in req.hardware:
        if not h.measured_here:
            risks.append(f"{h.name} (${h.usd_per_hour:g}/h, {h.kind}): no serving run measured on it; the GPU code "
                         "paths (vLLM on CUDA, experiments/gpu/*.yaml) exist but could not run here, so it is not a candidate.")
    hows = {df.loc[i, f"q{k}_how"] for i in df.index for k in range(len(req.quality))}
    if "composed" in hows:
        risks.append("Quality marked 'composed' combines a model's measured task score with the guard's measured "
                     "false-positive rate (q x (1 - FPR)); no run measured that model behind that guard.")
    if (df.guard_latency == "stack (composed)").any():
        risks.append("Guard latency marked 'stack (composed)' is the guard's in-process check time from the "
                     "guardrails stack run, added to the engine's percentiles; the gateway's HTTP hops are not in it.")
    for _, r in df.iterrows():
        if r.workload_risk:
            risks.append(f"{r.system}: measured on a different workload ({r.workload_risk}).")
    if ch.feasible and ch.row().engine == "llamacpp":
        risks.append("The bundle deploys llama.cpp's llama-server (continuous batching over --parallel slots); the lab "
                     "measured llama-cpp-python, which serves one request at a time, so the sizing is conservative for it.")
    scr = (ver or {}).get("scrapes") or {}
    if ch.feasible:
        eng = ch.row().engine
        got = f"GET /metrics of the engine run here answered {scr['engine_status']}" if "engine_status" in scr else ""
        risks.append(f"Engine metric names ({eng}): {VERIFIED[eng]}" + (f"; {got}" if got and not scr.get("engine") else "") + ".")
        if not scr.get("gateway"):
            risks.append("Gateway metric names: not checked against a live scrape in this report (no guarded gateway "
                         "was started: verify off or no guard).")
    if (ver or {}).get("by_guard"):
        risks.append(f"The guard answered {ver['by_guard']} of {ver['requests']} benign requests of the end-to-end check "
                     "itself (held for review or blocked): at this share, real users would wait for reviewers. Check the "
                     "guard's escalation band on traffic like yours before shipping.")
    if ch.feasible and not any(str(ch.row().get(f"q{k}_how", "")).startswith("measured (stack)")
                               for k in range(len(req.quality))):
        risks.append("Quality is not measured through the running stack for the recommendation (`llmarch-lab system "
                     "quality` does it); the end-to-end check measures latency and throughput only.")
    return risks


def by_guard_note(ver) -> str:
    n = ver.get("by_guard", 0)
    return (f" The guard answered {n} of the {ver['requests']} requests itself (blocked, or held for a human "
            "reviewer: the workload's prompts are benign), in tens of ms; the latencies compared are "
            f"the engine-answered requests', predicted at the rate that reached the engine "
            f"({ver.get('engine_rps', 0):.3g} req/s).") if n else ""


TRACE_COLS = ["predicted_on_trace", "error_on_trace_pct", "within_15pct_on_trace"]
def sweep_note(ver) -> str:
    """The at-check engine sweeps' TTFT / TPOT p50 per concurrency level (empty if none ran)."""
    rows = ver.get("sweep") or []
    if not rows:
        return ""
    lv = "; ".join(f"{r['level']:g}: {r['ttft_ms']:,.0f} / {r['tpot_ms']:.1f} ms" for r in rows)
    return (f" Engine sweep before and after the check (concurrency: TTFT / TPOT p50), the step cost "
            f"predicted_on_trace is calibrated on: {lv}.")


TRACE_NOTE = ("predicted: the chooser's model at the realised rate (Poisson arrivals, 4,000 simulated requests). "
              "predicted_on_trace (llama-server): the same slot model, its step cost calibrated on the engine sweeps "
              "run just before and after the check (this machine's speed drifts by tens of percent over hours), fed "
              "this run's own send times, prompt and output lengths: a p99 of 300 requests is compared with the "
              "prediction for those very requests.")


def verify_table_md(ver) -> str:
    """The check's predicted-vs-measured table in Markdown, with the on-trace columns when present."""
    cols = ["metric", "predicted", "measured", "error_pct", "within_15pct"]
    trace = "predicted_on_trace" in ver["table"]
    return markdown_rows(ver["table"].to_dict("records"), cols + TRACE_COLS * trace) + ("\n\n" + TRACE_NOTE) * trace


def _verify_html(ver) -> str:
    if ver is None:
        return "<p>Not run (verify disabled, or no feasible system).</p>"
    if "error" in ver:
        return f"<p><b>The end-to-end check failed:</b> {html.escape(ver['error'])}</p>"
    t = ver["table"].to_dict("records")
    for r in t:
        r["within 15%"] = "yes" if r.pop("within_15pct") else "no"
        r["on trace: within 15%"] = "yes" if r.pop("within_15pct_on_trace", False) else "no"
    head = (f"<p>Started for real: <code>{html.escape(ver['engine_command'][:300])}</code>"
            f"{' behind the guarded LiteLLM gateway' if ver['guarded'] else ''}; Poisson load at "
            f"{ver['rate_rps']:.3g} req/s (the peak one replica sees; realised {ver.get('realised_rps', ver['rate_rps']):.3g}), {ver['requests']} requests "
            f"({ver.get('workload', 'synthetic')} prompts, {ver.get('prompt_tokens_mean', 0):.0f} tokens on average), "
            f"{ver['errors']} errors, {ver['wall_s']:.0f} s in all.{html.escape(by_guard_note(ver) + sweep_note(ver))}</p>")
    cols = ["metric", "predicted", "measured", "error_pct", "within 15%"]
    if "predicted_on_trace" in ver["table"]:
        cols += TRACE_COLS[:-1] + ["on trace: within 15%"]
    return head + html_rows(t, cols) + f"<p class='note'>{html.escape(TRACE_NOTE)}</p>"


def page_html(ch, s: dict, figs: dict, svg: str) -> str:
    b64 = {k: base64.b64encode(v).decode() for k, v in figs.items()}
    ok = ch.feasible
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>System report: {html.escape(ch.req.system)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1 id='top'>System report: {html.escape(ch.req.system)}</h1>",
             f"<div class='note'>{html.escape(ch.req.description)} Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"from {html.escape(ch.req.path)} by llmarch-lab.</div>",
             "<nav><a href='#candidates'>candidates</a><a href='#recommendation'>recommendation</a>"
             "<a href='#verify'>end-to-end check</a><a href='#architecture'>architecture</a><a href='#cost'>cost</a>"
             "<a href='#bundle'>bundle</a><a href='#risks'>risks</a><a href='#method'>method</a></nav>",
             f"<div class='verdict {'ok' if ok else 'bad'}'>{html.escape(s['verdict'])}</div>",
             "<div class='plots'>" + "".join(f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in b64.items()) + "</div>",
             "<h2 id='requirements'>Requirements</h2>", html_rows(s["requirements"], ["item", "value"]),
             "<h2 id='candidates'>Candidates</h2>",
             html_rows(s["candidates"], s["candidate_cols"]),
             "<p class='note'>Runs behind each number:</p>",
             html_rows(s["candidates"], [c for c in s["link_cols"] if any(c in r for r in s["candidates"])],
                    raw={"serving run", "guard runs", *[f"{f.name} run" for f in ch.req.quality]}),
             "<h2 id='recommendation'>Recommendation and runners-up</h2><ul>"]
    for i, why in ch.reasons.items():
        parts.append(f"<li><b>#{i} {html.escape(ch.candidates.loc[i].system)}</b>: {html.escape(why)}</li>")
    parts += ["</ul>", "<h2 id='verify'>End-to-end check</h2>", _verify_html(s["verify"]),
              "<h2 id='architecture'>Architecture</h2>",
              svg if svg is not None else f"<p class='note'>{html.escape(NO_DOT)}</p>",
              "<h2 id='cost'>Cost projection</h2>",
              html_rows(s["projection"], list(s["projection"][0]) if s["projection"] else ["system"]),
              "<h2 id='bundle'>Deployment bundle</h2>"]
    if ok:
        parts.append("<p><a href='bundle/docker-compose.yaml'>docker-compose.yaml</a> · <a href='bundle/chart/values.yaml'>Helm values</a> · "
                     "<a href='bundle/prometheus/alerts.yml'>alert rules</a> · <a href='bundle/grafana/dashboard.json'>Grafana dashboard</a> · "
                     "<a href='bundle/RUNBOOK.md'>runbook</a></p>")
        parts.append(html_rows(s["validation"], ["check", "ok", "detail"]))
    else:
        parts.append("<p>No bundle: no system meets the requirements.</p>")
    parts += ["<h2 id='risks'>Risks and open questions</h2><ul>"] + [f"<li>{html.escape(r)}</li>" for r in s["risks"]] + ["</ul>"]
    parts += ["<h2 id='method'>Method</h2><pre class='note'>" + html.escape(chooser.__doc__ or "") + "</pre>",
              "<p><a href='#top'>top</a></p></body></html>"]
    return "\n".join(parts)


def page_markdown(ch, s: dict) -> str:
    out = [f"# System report: {ch.req.system}", "", ch.req.description, "", f"**{s['verdict']}**", "",
           "![cost vs quality](report_files/pareto_quality.png) ![cost vs TTFT](report_files/pareto_latency.png)", "",
           "## Requirements", "", markdown_rows(s["requirements"], ["item", "value"]), "",
           "## Candidates", "", markdown_rows(s["candidates"], s["candidate_cols"]), "",
           "## Recommendation and runners-up", ""]
    out += [f"- #{i} {ch.candidates.loc[i].system}: {why}" for i, why in ch.reasons.items()]
    out += ["", "## End-to-end check", ""]
    ver = s["verify"]
    if ver is None:
        out.append("Not run.")
    elif "error" in ver:
        out.append(f"Failed: {ver['error']}")
    else:
        out.append(f"Poisson load at {ver['rate_rps']:.3g} req/s (realised {ver.get('realised_rps', ver['rate_rps']):.3g}; "
                   "predicted again at the realised rate), "
                   f"{ver['requests']} requests, {ver['errors']} errors"
                   f"{', behind the guarded gateway' if ver['guarded'] else ''}.{by_guard_note(ver)}{sweep_note(ver)}")
        out += ["", verify_table_md(ver)]
    out += ["", "## Architecture", "", "![architecture](report_files/architecture.svg)", "", "## Cost projection", ""]
    if s["projection"]:
        out.append(markdown_rows(s["projection"], list(s["projection"][0])))
    out += ["", "## Deployment bundle", ""]
    out.append(markdown_rows(s["validation"], ["check", "ok", "detail"]) if s["validation"] else "No bundle.")
    out += ["", "## Risks and open questions", ""] + [f"- {r}" for r in s["risks"]]
    return "\n".join(out) + "\n"

