"""The system chooser end to end on real parts: real notebooks log real serving/guard runs into a
real MLflow store, the chooser reads them, the recommended system is started for real (llama.cpp
engine + the guarded LiteLLM gateway) and driven, the bundle is checked by promtool, Helm's own
renderer/linter and the Kubernetes schema, and the report is rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import labtest
import pytest
import yaml

from llmarch_lab import LabError, config
from llmarch_lab.run import runner
from llmarch_lab.store import tracking
from llmarch_lab.system import bundle, records, requirements, sizing

ROOT = Path(__file__).resolve().parent.parent

HW = """hardware:
  - {name: cpu-2vcpu, usd_per_hour: 0.0816, kind: cpu, measured_here: true, source: "prices.yaml", date: 2026-06-17}
  - {name: a10g-24gb, usd_per_hour: 1.006, kind: gpu, gpus: 1, source: "prices.yaml", date: 2026-06-17}
"""

INPUTS = """suite: sys-inputs
runs:
  - name: serve
    notebook: 40_serving
    params: {engine: llamacpp, levels: [1, 2], max_requests: 4, input_tokens: 64, output_tokens: 16,
             warmup_requests: 1, measure_bandwidth: false, slo_ttft_ms: 5000, slo_tpot_ms: 500}
  - name: injection
    notebook: 50_guardrails
    params: {part: injection, detector: rules, cv_folds: 3, latency_n: 20}
  - name: stack
    notebook: 50_guardrails
    params: {part: stack, stack_detector: rules, stack_pii_config: no_op/tuned, stack_requests: 20}
"""


def _req(tmp: Path, name: str, body: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(body + HW)
    return p


def cli(*args, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "llmarch_lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


# ----------------------------------------------------------------------------- requirements

def test_requirements_files_in_the_repo_validate():
    files = requirements.files()
    assert {f.stem for f in files} >= {"support_assistant", "clinical_strict", "quickstart"}
    for f in files:
        assert requirements.load(f).hardware
    assert not set(files) & set(config.suite_files())  # not read as suites


@pytest.mark.parametrize("body, message", [
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 2, prompt_tokens: 8, output_tokens: 8}\nslos: {}\nbudget_usd_month: 5\n",
     r":2: workload: mean_rps: 2 is above peak_rps"),
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {ttft_ms_p99: -1}\nbudget_usd_month: 5\n",
     r":3: slos.ttft_ms_p99: .*greater than 0"),
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {}\nbudget_usd_month: 5\n"
     "quality:\n  - {name: q, task: nope, min: 1}\n", r":6: quality.0: .*unknown task 'nope'"),
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {}\nbudget_usd_month: 5\n"
     "quality:\n  - {name: q, sources: [{lab: rag, metric: quality.colour}], min: 1}\n",
     r":6: quality.0.sources.0: .*quality.colour.*not declared"),
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {}\nbudget_usd_month: 5\n"
     "quality:\n  - {name: q, sources: [{lab: serving, metric: latency.ttft_ms_p99}], min: 1}\n",
     r"latency.ttft_ms_p99 is lower-is-better; use max"),
    ("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {}\nbudget_usd_month: 5\nbudjet: 3\n",
     r":5: budjet: unknown field"),
])
def test_bad_requirements_give_one_line_with_file_and_line(tmp_path, body, message):
    p = _req(tmp_path, "bad", body)
    with pytest.raises(LabError, match=message):
        requirements.load(p)
    r = cli("system", "choose", str(p))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(p) in r.stderr, r.stderr


def test_no_measured_machine_is_an_error(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("system: x\nworkload: {peak_rps: 1, mean_rps: 1, prompt_tokens: 8, output_tokens: 8}\nslos: {}\n"
                 "budget_usd_month: 5\nhardware:\n  - {name: g, usd_per_hour: 1, kind: gpu, source: s, date: d}\n")
    with pytest.raises(LabError, match=r":5: hardware: no entry has measured_here"):
        requirements.load(p)


# ----------------------------------------------------------------------------- sizing rules

def test_queue_simulation_matches_queueing_theory():
    import numpy as np
    import pandas as pd

    # M/D/1 (fixed 1 s service) at rate 0.6: Pollaczek-Khinchine mean wait rho S / (2 (1 - rho)).
    det = pd.DataFrame({"ttft_ms": [100.0], "e2e_ms": [1000.0], "tpot_ms": [10.0]})
    sim = sizing.simulate_open_loop(det, 1, 0.6, n=60000, seed=1)
    assert sim["wait_ms_mean"] == pytest.approx(1000 * 0.6 / (2 * 0.4), rel=0.06)
    assert sim["ttft_ms_p50"] == pytest.approx(100 + sim["wait_ms_p50"], abs=1e-6)
    # M/M/1 (exponential service, mean 1 s) at rate 0.5: mean wait rho / (mu - lambda) = 1 s.
    rng = np.random.default_rng(0)
    e2e = rng.exponential(1000.0, 20000)
    exp = pd.DataFrame({"ttft_ms": e2e * 0, "e2e_ms": e2e, "tpot_ms": e2e * 0})
    sim = sizing.simulate_open_loop(exp, 1, 0.5, n=60000, seed=2)
    assert sim["wait_ms_mean"] == pytest.approx(1000.0, rel=0.1)
    # Two slots halve the wait of a light load (M/D/2 at the same per-slot utilisation waits less).
    two = sizing.simulate_open_loop(det, 2, 1.2, n=60000, seed=1)
    assert two["wait_ms_mean"] < sim["wait_ms_mean"]


def test_a_batching_engine_is_processor_sharing_at_the_sweeps_slow_down():
    import pandas as pd

    alone = pd.DataFrame({"ttft_ms": [200.0], "e2e_ms": [1000.0], "tpot_ms": [10.0]})
    # Alone a request takes 1 s; two in the engine take 2 s each (no gain from batching, as on
    # this CPU); four take 4 s.
    flat = {1: 1000.0, 2: 2000.0, 4: 4000.0}
    light = sizing.simulate_batching(alone, flat, 4, 0.01, n=5000, seed=1)
    assert light["e2e_ms_p50"] == pytest.approx(1000.0) and light["ttft_ms_p50"] == pytest.approx(200.0)
    # Processor sharing at speed 1/k with k in the engine is an M/G/1-PS queue: mean time in the
    # system S / (1 - rho), whatever the slots; at rho = 0.5, 2 s.
    ps = sizing.simulate_batching(alone, flat, 8, 0.5, n=40000, seed=2)
    assert ps["e2e_ms_mean"] == pytest.approx(2000.0, rel=0.08)
    # An engine that gains from batching (4 in 1.5 s each) keeps the same load far shorter.
    gain = sizing.simulate_batching(alone, {1: 1000.0, 2: 1100.0, 4: 1500.0}, 8, 0.5, n=40000, seed=2)
    assert gain["e2e_ms_mean"] < 0.75 * ps["e2e_ms_mean"]
    # More arrivals than slots wait FCFS.
    one_slot = sizing.simulate_batching(alone, flat, 1, 0.5, n=20000, seed=3)
    assert one_slot["wait_ms_p99"] > 0 and ps["wait_ms_p99"] <= one_slot["wait_ms_p99"]


def test_sizing_goodput_then_replicas_until_the_open_loop_prediction_meets_the_slo(tmp_path):
    import pandas as pd

    req = requirements.load(_req(tmp_path, "r", "system: x\nworkload: {peak_rps: 3, mean_rps: 1, prompt_tokens: 8, "
                                                "output_tokens: 8}\nslos: {ttft_ms_p99: 2500}\nbudget_usd_month: 500\n"
                                                "sizing: {headroom: 0.0}\n"))
    levels = [{"level": 1, "req_per_s": 1.0, "ttft_ms_p99": 200.0, "e2e_ms_p50": 1000.0, "error_rate": 0.0},
              {"level": 2, "req_per_s": 1.0, "ttft_ms_p99": 900.0, "e2e_ms_p50": 2000.0, "error_rate": 0.0},
              {"level": 4, "req_per_s": 1.0, "ttft_ms_p99": 2900.0, "e2e_ms_p50": 4000.0, "error_rate": 0.0}]
    reqs = pd.DataFrame({"level": [1.0] * 8, "ttft_ms": [200.0] * 8, "e2e_ms": [1000.0] * 8, "tpot_ms": [100.0] * 8})
    s = records.Serving("r", "e", "n", "llamacpp", "m", "concurrent", {}, levels, requests=reqs)
    sz = sizing.size(s, records.Guard("none"), req)
    assert sz["goodput_rps"] == 1.0  # a serial engine: one slot, 1 req/s whatever the concurrency
    # ceil(3 / 1.0) = 3 replicas would run each at 100% (no steady state); more replicas until the
    # simulated queue's TTFT p99 is within 2500 ms.
    assert 3 < sz["replicas"] < 10 and sz["slo_ok"] and sz["operating"]["servers"] == 1
    n = sz["replicas"]
    assert sizing.open_loop(s, levels, 3 / n)["ttft_ms_p99"] <= 2500
    assert sizing.open_loop(s, levels, 3 / (n - 1))["ttft_ms_p99"] > 2500
    assert sizing.open_loop(s, levels, 1.0) is None  # at the peak: no steady state
    # A guard's added p99 counts against the SLO at every level.
    sz = sizing.size(s, records.Guard("slow", added_ms={"p50": 2400.0, "p99": 2400.0}), req)
    assert sz["replicas"] is None and "ttft_ms_p99 2600 > 2500 already at level 1" in sz["slo_violation"]


# ----------------------------------------------------------------------------- bundle checks

def _bundle_cfg(**kw):
    base = dict(system="demo", engine="llamacpp", model="smollm2-135m-instruct", model_file="m.gguf", replicas=2,
                max_replicas=4, slots=4, threads=2, ctx=2048, cpu="2", memory="4Gi", gpus=0, guard="rules",
                pii_config="no_op/tuned", slos={"ttft_ms_p99": 1000.0, "error_rate": 0.01})
    return bundle.BundleConfig(**{**base, **kw})


def test_bundle_validates_and_the_checks_can_fail(tmp_path):
    out = tmp_path / "bundle"
    bundle.write(_bundle_cfg(), out)
    res = bundle.validate(out)
    assert all(ok for ok, _ in res.values()), {k: v for k, v in res.items() if not v[0]}
    kinds = {k.split()[2].split("/")[0] for k in res if k.startswith("k8s schema")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}
    dep = yaml.safe_load((out / "k8s" / "engine-deployment.yaml").read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 2 and "--parallel" in c["args"] and c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert yaml.safe_load((out / "k8s" / "engine-hpa.yaml").read_text())["spec"]["maxReplicas"] == 4
    # A wrong field in a manifest, a broken rule: the same checks say so.
    dep["spec"]["replicas"] = "two"
    (out / "k8s" / "engine-deployment.yaml").write_text(yaml.safe_dump(dep))
    rules = yaml.safe_load((out / "prometheus" / "alerts.yml").read_text())
    rules["groups"][0]["rules"][0]["expr"] = "histogram_quantile(0.99, rate(x[5m]) >"
    (out / "prometheus" / "alerts.yml").write_text(yaml.safe_dump(rules))
    res = bundle.validate(out)
    assert not res["k8s schema Deployment/demo-engine"][0]
    assert not res["promtool check rules"][0]
    # No guard: no guard Deployment, the gateway config has no guardrail.
    bundle.write(_bundle_cfg(guard="none"), tmp_path / "b2")
    assert not (tmp_path / "b2" / "k8s" / "guard.yaml").exists()
    assert "guardrails" not in yaml.safe_load((tmp_path / "b2" / "gateway" / "config.yaml").read_text())


def test_metric_names_check_parses_a_scrape(tmp_path):
    out = tmp_path / "bundle"
    bundle.write(_bundle_cfg(), out)
    engine = ("# HELP llamacpp:requests_deferred x\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n"
              "# HELP llamacpp:requests_processing x\n# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 1\n")
    res = bundle.metric_names_check(out, {"engine": engine})
    assert res["metric llamacpp:requests_deferred"][0]
    assert not res["metric llamacpp:tokens_predicted_total"][0]  # used by the dashboard, not in this scrape
    assert "metric llamacpp:kv_cache_usage_ratio" not in res  # llama-server has no KV-cache metric: not used


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A real store with a serving sweep (llama.cpp, SmolLM2), an injection guard's CV run and its
    stack latency: what the chooser composes."""
    tmp = tmp_path_factory.mktemp("system")
    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    (tmp / "mlruns").mkdir()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    suite_file = tmp / "inputs.yaml"
    suite_file.write_text(INPUTS)
    out = runner.run_suite(config.load_suite(suite_file), progress=False)
    assert all(o.status == "FINISHED" for o in out), {o.spec.name: o.error for o in out}
    yield tmp
    mp.undo()


FEASIBLE = """system: e2e
experiments: [sys-inputs]
workload: {peak_rps: 0.5, mean_rps: 0.2, prompt_tokens: 64, output_tokens: 16}
slos: {ttft_ms_p99: 8000, tpot_ms_p50: 500, error_rate: 0.05}
quality:
  - {name: injection F1, task: injection_f1, min: 0.3}
safety: {guards: [injection]}
budget_usd_month: 1000
verify: {enabled: true, requests: 8, max_seconds: 120}
"""


def _links_ok(html: str, folder: Path) -> list[str]:
    """Every href: an anchor on the page, a file in the report folder, or an MLflow run in the store."""
    c = tracking.client()
    bad = []
    ids = set(re.findall(r"id='([^']+)'", html)) | set(re.findall(r'id="([^"]+)"', html))
    for href in re.findall(r"href=['\"]([^'\"]+)['\"]", html):
        if href.startswith("#"):
            ok = href[1:] in ids
        elif href.startswith("http://127.0.0.1:5000/#/experiments/"):
            run_id = href.rsplit("/", 1)[1]
            try:
                ok = c.get_run(run_id).info.status == "FINISHED"
            except Exception:  # noqa: BLE001 - a missing run is a broken link
                ok = False
        else:
            ok = (folder / href).is_file()
        if not ok:
            bad.append(href)
    return bad


def test_report_recommends_verifies_bundles_and_renders(measured, monkeypatch):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{measured / 'mlruns' / 'mlflow.db'}")
    req = _req(measured, "feasible", FEASIBLE)
    out_dir, docs = measured / "report", measured / "docs" / "e2e"
    before = labtest.engine_pids()
    r = cli("system", "report", str(req), "--out", str(out_dir), "--screenshot", "--docs", str(docs))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "recommended: llamacpp/" in r.stdout and "guard:rules" in r.stdout
    html = (out_dir / "report.html").read_text()
    md = (out_dir / "report.md").read_text()
    assert "Recommended:" in html and "INFEASIBLE" not in html
    assert html.count("data:image/png;base64,") == 2 and "<svg" in html  # plots inline, diagram rendered
    assert not _links_ok(html, out_dir), _links_ok(html, out_dir)
    assert "## End-to-end check" in md and "| TTFT p50 (ms) |" in md
    # The end-to-end check really ran: requests went through the gateway to the engine.
    reqs = (out_dir / "report_files" / "verify_requests.csv").read_text().splitlines()
    assert len(reqs) == 1 + 8
    assert "behind the guarded LiteLLM gateway" in html
    # The bundle passed every check.
    bundle_checks = re.findall(r"<td>(ok|FAILED)</td>", html)
    assert bundle_checks and set(bundle_checks) == {"ok"}
    assert (out_dir / "bundle" / "chart" / "values.yaml").is_file()
    # The first screen renders, with the plots in it (not a blank page).
    img = Image.open(out_dir / "screenshot.png").convert("RGB")
    assert img.size == (1280, 1000)
    px = np.asarray(img).astype(int)
    assert px.std() > 20, "the screenshot is nearly uniform"
    # The recommended system's red star (#d62728) is drawn only in the plots: it is on the first screen.
    red = (np.abs(px - np.array([214, 39, 40])) < 40).all(axis=2)
    assert red.sum() > 100, "no plot marker on the first screen"
    # The bundle's gateway metric names were checked against the live gateway's /metrics.
    assert "metric litellm_proxy_total_requests_metric_total" in html
    assert (out_dir / "report_files" / "gateway_metrics.txt").is_file()
    # The deliverables: written into the report and copied to --docs.
    for f in ("ARCHITECTURE.md", "RUNBOOK.md", "CAPACITY.md", "architecture.svg"):
        assert (docs / f).read_bytes() == (out_dir / "deliverables" / f).read_bytes(), f
    arch, cap, book = ((docs / f).read_text() for f in ("ARCHITECTURE.md", "CAPACITY.md", "RUNBOOK.md"))
    assert "## The choice and why" in arch and "recommended" in arch and "llmarch_engine_inflight" in arch
    assert "| 10x: 5 req/s |" in cap and "| TTFT p99 (ms) |" in cap
    assert "## TTFTp99SLOBurn" in book and "## Measured: the alert drill" in book
    # Logged to MLflow with the same files.
    run = tracking.search("system", tags={"llmarch.name": "e2e"})[0]
    assert run["metrics"]["count.system_replicas"] >= 1 and run["metrics"]["count.system_checks_failed"] == 0
    arts = {a.path for a in tracking.client().list_artifacts(run["run_id"])}
    assert {"report.html", "report.md", "bundle"} <= arts
    # Nothing left running: the engine and the gateway this report started were stopped.
    assert labtest.engine_pids() - before == set(), labtest.engine_pids() - before


def test_infeasible_requirements_name_the_binding_constraint(measured, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{measured / 'mlruns' / 'mlflow.db'}")
    req = _req(measured, "broke", FEASIBLE.replace("system: e2e", "system: broke")
               .replace("budget_usd_month: 1000", "budget_usd_month: 20"))
    out_dir = measured / "broke"
    r = cli("system", "report", str(req), "--out", str(out_dir))
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "infeasible: binding constraint budget" in r.stdout
    html = (out_dir / "report.html").read_text()
    assert "INFEASIBLE" in html and "Binding constraint: budget" in html and "Nearest candidate" in html
    assert "budget $20.00" in html
    assert not (out_dir / "bundle").exists()
    # Without Graphviz the report still comes out, with a note where the diagram would be.
    no_dot = measured / "no-dot-bin"
    no_dot.mkdir(exist_ok=True)
    r = cli("system", "report", str(req), "--out", str(measured / "broke-no-dot"),
            env={**os.environ, "PATH": str(no_dot)})
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    html = (measured / "broke-no-dot" / "report.html").read_text()
    assert "<svg" not in html and "diagram not drawn: Graphviz `dot` not found (`make sys-graphviz`" in html
    assert "diagram not drawn" in (measured / "broke-no-dot" / "report.md").read_text()
    assert (measured / "broke-no-dot" / "report_files" / "architecture.dot").is_file()
    # A quality floor nobody reaches binds instead.
    req2 = _req(measured, "strict", FEASIBLE.replace("system: e2e", "system: strict").replace("min: 0.3", "min: 0.999"))
    r = cli("system", "choose", str(req2))
    assert r.returncode == 3 and "binding constraint quality" in r.stdout, r.stdout[-2000:]


def test_a_bad_requirements_file_writes_nothing(measured, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{measured / 'mlruns' / 'mlflow.db'}")
    req = _req(tmp_path, "bad", FEASIBLE.replace("peak_rps: 0.5", "peak_rps: zero"))
    out_dir = tmp_path / "out"
    r = cli("system", "report", str(req), "--out", str(out_dir))
    assert r.returncode == 2 and "workload.peak_rps" in r.stderr and ":3:" in r.stderr
    assert not out_dir.exists() and not list(tmp_path.glob(".out.*"))


def test_system_reaches_the_labs_only_through_registry_services():
    from llmarch_lab import registry

    for name in registry.SERVICES:
        assert registry.service(name) is not None, name
    assert Path(registry.service("guardrails.hook_file")).is_file()
    with pytest.raises(LabError, match="unknown lab service 'serving.nope'"):
        registry.service("serving.nope")
    # stream_window_chars is read off the gateway's launch signature through the registry
    assert sizing.stream_window_chars() > 0


def test_docs_folder_with_other_files_is_refused_before_any_work(tmp_path):
    req = _req(tmp_path, "feasible", FEASIBLE)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("mine")
    r = cli("system", "report", str(req), "--out", str(tmp_path / "report"), "--docs", str(docs), timeout=120)
    assert r.returncode == 2 and "--docs" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (docs / "notes.txt").read_text() == "mine" and not (tmp_path / "report").exists()


def test_quality_is_measured_through_the_running_stack(measured, monkeypatch):
    """`system quality` stands up the candidate (engine + guard gateway), asks PubMedQA questions
    through the gateway with log-probs, logs the run; the chooser then uses it, not a composed value."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{measured / 'mlruns' / 'mlflow.db'}")
    req = _req(measured, "quality", FEASIBLE.replace("system: e2e", "system: qual").replace(
        "quality:\n", "quality:\n  - {name: PubMedQA accuracy, task: pubmedqa_accuracy, min: 0.0}\n"))
    r = cli("system", "choose", str(req))
    assert r.returncode == 3 and "binding constraint quality" in r.stdout, r.stdout[-2000:]  # not measured yet
    before = labtest.engine_pids()
    out_dir = measured / "stack-quality"
    r = cli("system", "quality", str(req), "--items", "6", "--out", str(out_dir))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "measured (stack)" in r.stdout and "measured 1 pair(s)" in r.stdout
    answers = next(out_dir.glob("*-rules")) / "answers.csv"
    rows = answers.read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("qid,gold,pred,held,correct")
    run = tracking.search("system", tags={"llmarch.name": "stack-quality"})[0]
    assert run["params"]["guard"] == "rules" and run["params"]["items"] == "6"
    acc = run["metrics"]["quality.stack_pubmedqa_accuracy"]
    assert 0.0 <= run["metrics"]["quality.stack_pubmedqa_accuracy_ci95_low"] <= acc <= \
        run["metrics"]["quality.stack_pubmedqa_accuracy_ci95_high"] <= 1.0
    # The measured value decides now: the floor is met, and a second call has nothing left to measure.
    r = cli("system", "quality", str(req), "--items", "6", "--out", str(out_dir))
    assert r.returncode == 0 and "measured 0 pair(s)" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert labtest.engine_pids() - before == set(), labtest.engine_pids() - before


def test_the_check_can_send_real_pubmedqa_questions_of_about_the_prompt_length(tmp_path):
    from llmarch_lab.assets import models
    from llmarch_lab.system import verify

    tok = models.load_tokenizer("smollm2-135m-instruct")
    body = FEASIBLE.replace("prompt_tokens: 64", "prompt_tokens: 128").replace(
        "requests: 8, max_seconds: 120}", "requests: 40, max_seconds: 120, workload: pubmedqa}")
    req = requirements.load(_req(tmp_path, "pq", body))
    pool = verify.check_pool(req, tok)
    assert len(pool) == 40 and len({r.messages[0]["content"] for r in pool}) == 40
    assert all("Question:" in r.messages[0]["content"] for r in pool)
    mean = sum(r.prompt_tokens for r in pool) / len(pool)
    assert 110 <= mean <= 146, mean  # the abstracts are cut so the whole prompt is about 128 tokens
    synthetic = verify.check_pool(requirements.load(_req(tmp_path, "syn", FEASIBLE.replace("prompt_tokens: 64", "prompt_tokens: 128"))), tok)
    assert {r.prompt_tokens for r in synthetic} == {128}
    with pytest.raises(LabError, match="verify.workload"):
        requirements.load(_req(tmp_path, "bad", body.replace("workload: pubmedqa", "workload: sharegpt")))


def test_a_guards_injection_quality_comes_from_outside_sources_first():
    """The training file's cross-validation flatters a detector tuned on it (minilm-lr: F1 0.83 there,
    0.45 on other sources' prompts); the chooser reads the outside sources' test F1 and FPR first."""
    from llmarch_lab.system import chooser

    def run(rid, part, metrics, **params):
        return {"run_id": rid, "tags": {"lab": "guardrails"}, "params": {"part": part, **params}, "metrics": metrics}

    runs = [run("inj", "injection", {"quality.injection_f1": 0.83, "errors.injection_fpr": 0.05}, detector="minilm-lr"),
            run("out", "outside", {"quality.outside_test_f1": 0.45, "errors.outside_test_benign_fpr": 0.26},
                outside_check="injection", outside_detector="minilm-lr"),
            run("tox", "outside", {"quality.outside_test_f1": 0.72}, outside_check="toxicity", outside_detector="minilm-lr"),
            run("lat", "stack", {"latency.guard_ms_p50": 20.0, "latency.guard_ms_p99": 40.0}, stack_detector="minilm-lr"),
            run("cv-only", "injection", {"quality.injection_f1": 0.68}, detector="rules"),
            run("lat2", "stack", {"latency.guard_ms_p50": 10.0, "latency.guard_ms_p99": 20.0}, stack_detector="rules")]
    gs = {g.detector: g for g in records.guards(runs)}
    assert gs["minilm-lr"].f1_run["run_id"] == "out" and gs["minilm-lr"].fpr == 0.26
    assert gs["rules"].f1_run["run_id"] == "cv-only"  # no outside run: the training file's CV
    comps = records.Components([], list(gs.values()), runs, {})
    floor = requirements.Floor(name="injection F1", task="injection_f1", min=0.8)
    assert chooser.quality_value(floor, comps, None, gs["minilm-lr"])[0] == 0.45
    assert chooser.quality_value(floor, comps, None, gs["rules"])[0] == 0.68
