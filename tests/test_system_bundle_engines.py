"""The system lab's bundle and the cost lab's reader for the adapted engines (OpenVINO GenAI,
CTranslate2, served through llm/adapters): the same bundle checks as tests/test_system.py (YAML/JSON,
promtool, helm lint, the Kubernetes schema), the engine command from engine_args.adapter_args, the
adapter's image Dockerfile with the Makefile's pins, alert rules and dashboard on the engine's own
metric names (checked against the real adapter's /metrics text), and a serving run of such an
engine read by the cost model like any other. No engine is started."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from llmarch_lab.llm import engine_args, engine_metrics, engines
from llmarch_lab.system import bundle, bundle_files

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = {"openvino": "smollm2-135m-instruct.Q8_0.gguf", "ctranslate2": "smollm2-135m-instruct-0.1.2-int8"}


def _cfg(engine: str, **kw) -> bundle.BundleConfig:
    base = dict(system="demo", engine=engine, model="smollm2-135m-instruct", model_file=MODEL_FILE[engine], replicas=2,
                max_replicas=4, slots=4, threads=2, ctx=2048, cpu="2", memory="4Gi", gpus=0, guard="rules",
                pii_config="no_op/tuned", slos={"ttft_ms_p99": 1000.0, "error_rate": 0.01})
    return bundle.BundleConfig(**{**base, **kw})


def _makefile_var(name: str) -> str:
    m = re.search(rf"^{name}\s*[?:]?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"Makefile has no {name}"
    return m.group(1).strip()


@pytest.mark.parametrize("engine", engines.ADAPTED)
def test_adapted_engine_bundle_validates_and_ships_the_measured_command(tmp_path, engine):
    out = tmp_path / "bundle"
    bundle.write(_cfg(engine), out)
    res = bundle.validate(out)
    assert all(ok for ok, _ in res.values()), {k: v for k, v in res.items() if not v[0]}
    kinds = {k.split()[2].split("/")[0] for k in res if k.startswith("k8s schema")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}
    # The one builder the lab's engines.launch uses, with the model under /models.
    want = engine_args.adapter_args(engine, f"/models/{MODEL_FILE[engine]}", "smollm2-135m-instruct", "0.0.0.0",
                                    8000, 2048, 4, 2)
    dep = yaml.safe_load((out / "k8s" / "engine-deployment.yaml").read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == want and c["image"] == f"llmarch-lab-{engine}:0.1.0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["ports"][0]["containerPort"] == 8000
    comp = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["engine"]
    assert comp["command"] == want and comp["image"] == f"llmarch-lab-{engine}:0.1.0"
    assert comp["volumes"] == ["./models:/models:ro"] and "x-note" not in comp
    assert yaml.safe_load((out / "chart" / "values.yaml").read_text())["engine"]["args"] == want
    # A measured run's own engine_args ship after the builder's (the adapter's tuning flags).
    bundle.write(_cfg(engine, extra_args=["--cache-gb", "2"]), tmp_path / "b2")
    comp = yaml.safe_load((tmp_path / "b2" / "docker-compose.yaml").read_text())["services"]["engine"]
    assert comp["command"] == want + ["--cache-gb", "2"]


@pytest.mark.parametrize("engine", engines.ADAPTED)
def test_adapted_engine_dockerfile_has_the_makefile_pins_and_the_adapter(tmp_path, engine):
    bundle.write(_cfg(engine), tmp_path / "bundle")
    text = (tmp_path / "bundle" / "engine" / "Dockerfile").read_text()
    assert text == bundle_files.template(f"engine-{engine}/Dockerfile")
    assert f"-t llmarch-lab-{engine}:0.1.0 ." in text
    pins = _makefile_var("ADAPTER_DEPS").split() + [_makefile_var(engine.upper())]
    if engine == "ctranslate2":
        pins += [_makefile_var("TORCH"), "transformers==5.19.0"]
    installs = " ".join(line for line in text.splitlines() if line.startswith("RUN pip install"))
    assert all(p in installs.split() for p in pins), (pins, installs)
    for rel in ("llmarch_lab/__init__.py", "llmarch_lab/llm/__init__.py", "llmarch_lab/llm/adapters/"):
        assert f"COPY {rel} {rel}" in text and (ROOT / rel).exists()
    assert 'ENTRYPOINT ["python", "-m", "llmarch_lab.llm.adapters.openai_http"]' in text
    assert "curl" in text  # docker-compose's health check runs curl inside the engine container
    # The guard's Dockerfile is still there; engines with a public image get no engine/Dockerfile.
    assert (tmp_path / "bundle" / "guard" / "Dockerfile").is_file()
    bundle.write(dataclasses.replace(_cfg(engine), engine="llama-server", model_file="m.gguf"), tmp_path / "ls")
    assert not (tmp_path / "ls" / "engine").exists()


@pytest.mark.parametrize("engine", engines.ADAPTED)
def test_adapted_engine_alerts_and_dashboard_use_its_metric_names(tmp_path, engine):
    from prometheus_client import generate_latest

    from llmarch_lab.llm.adapters.openai_http import Metrics

    out = tmp_path / "bundle"
    bundle.write(_cfg(engine), out)
    names = engine_metrics.NAMES[engine]
    alerts = yaml.safe_load((out / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in alerts}
    dash = json.loads((out / "grafana" / "dashboard.json").read_text())
    dash_exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert names["queue"] in exprs["QueueBuildingUp"] and f"{names['ttft_hist']}_bucket" in exprs["TTFTp99SLOBurn"]
    for role in ("queue", "running", "generated", "prompt_tokens", "ttft_hist"):
        assert any(names[role] in e for e in dash_exprs), role
    used = " ".join([*exprs.values(), *dash_exprs])
    engine_series = set(re.findall(r"[a-z0-9_]+:[a-z0-9_]+", used))
    assert engine_series and all(s.startswith(f"{engine}:") for s in engine_series), engine_series
    assert ("KVCacheNearlyFull" in exprs) == ("kv_usage" in names)  # OpenVINO reports it, CTranslate2 not
    hpa = yaml.safe_load((out / "k8s" / "engine-hpa.yaml").read_text())
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == bundle_files.INFLIGHT
    groups = yaml.safe_load((out / "prometheus" / "alerts.yml").read_text())["groups"]
    assert groups[1]["rules"] == [{"record": bundle_files.INFLIGHT, "expr": f"{names['running']} + {names['queue']}"}]
    cfg = yaml.safe_load((out / "bundle.yaml").read_text())
    assert cfg["metrics"][engine] == names and "tests/test_engine_adapters.py" in cfg["metrics_verified"][engine]
    # Every engine name the bundle uses is in the adapter's own /metrics text (its real Metrics class,
    # after one request's worth of observations), by the same check the end-to-end report runs.
    m = Metrics(engine, lambda: {"num_requests_running": 1.0})
    m.prompt.inc(8)
    m.generated.inc(4)
    m.ttft.observe(0.05)
    m.e2e.observe(0.2)
    res = bundle.metric_names_check(out, {"engine": generate_latest(m.registry).decode()})
    engine_checks = {k: v for k, v in res.items() if k.startswith(f"metric {engine}:")}
    assert len(engine_checks) >= 5 and all(ok for ok, _ in engine_checks.values()), engine_checks


def test_cost_model_reads_an_adapted_engine_serving_run_like_any_other(store):
    """Two serving runs' sweep series, logged through the lab's own run API the way the runner logs
    them (LabRun.log_metrics per level, step = level; hand-written numbers, no engine started): the
    cost model reads the OpenVINO run as it reads the llama-server one, engine from its params."""
    from llmarch_lab import registry
    from llmarch_lab.labs.cost import costmodel
    from llmarch_lab.store import tracking

    rows = {}
    for engine, tpot in (("openvino", 50.0), ("llama-server", 100.0)):
        ServingParams = registry.service("serving.params")  # noqa: N806 - a class
        p = ServingParams(engine=engine, model=f"m-{engine}", parallel=2, levels=[1, 2])
        run = tracking.start(p, notebook="40_serving")
        run.set_tags({"llmarch.name": f"serve-{engine}"})  # the suite run's name, as the runner tags it
        for level in (1, 2):  # 100 prompt tokens per request; TTFT 200 ms at each level
            run.log_metrics({"throughput.sweep.req_per_s": level * 0.5, "throughput.sweep.output_tok_per_s": level * 8.0,
                             "throughput.sweep.total_tok_per_s": level * 58.0, "latency.sweep.ttft_ms_p50": 200.0,
                             "latency.sweep.tpot_ms_p50": tpot}, step=level)
        run.close()
        rows[engine] = run.run_id
    tp = costmodel.throughput_from_runs()
    assert set(tp.engine) == {"openvino", "llama-server"} and len(tp) == 4
    ov = tp[tp.engine == "openvino"].set_index("concurrency")
    assert ov.loc[2, "model"] == "m-openvino" and ov.loc[2, "source"] == rows["openvino"]
    assert ov.loc[1, "prefill_tok_s"] == pytest.approx(100 / 0.2) and ov.loc[2, "prefill_tok_s"] == pytest.approx(2 * 100 / 0.2)
    assert ov.loc[2, "decode_tok_s"] == pytest.approx(2 * 1000 / 50.0)
    price = costmodel.price_at(tp, "m-openvino", 0.0816)
    assert price["concurrency"] == 2 and price["usd_per_1m_output"] == pytest.approx(0.0816 / (40.0 * 3600) * 1e6)


HW = """hardware:
  - {name: cpu-2vcpu, usd_per_hour: 0.0816, kind: cpu, measured_here: true, source: "prices.yaml", date: 2026-06-17}
"""


@pytest.mark.parametrize("engine", engines.ADAPTED)
def test_the_chosen_adapted_engine_run_becomes_its_bundle(tmp_path, engine):
    """The chooser's choice of a batching engine's serving run (records built by hand, as
    tests/test_system.py's sizing test builds them: hand-written sweep levels; the params as the
    serving lab logs them) gives a BundleConfig with the run's own batch size, model file and
    engine_args, and a bundle whose command is the one the lab measured with."""
    import pandas as pd

    from llmarch_lab import LabError, registry
    from llmarch_lab.store import tracking
    from llmarch_lab.system import chooser, records, requirements

    ServingParams = registry.service("serving.params")  # noqa: N806 - a class
    extra = ["--max-batched-tokens", "128"] if engine == "openvino" else []
    p = ServingParams(engine=engine, parallel=6, levels=[1, 2, 4], engine_threads=2, engine_args=extra)
    served = (str(engines.gguf_path(p.model)) if engine == "openvino"
              else str(tmp_path / "cache" / "models" / "ct2" / "smollm2-135m-instruct-0.1.2-int8"))
    measured = engine_args.adapter_args(engine, served, "smollm2-135m-instruct", "127.0.0.1", 41234, p.max_model_len,
                                        p.parallel, p.engine_threads) + extra
    run = {"run_id": "r1", "experiment": "e", "name": "serve", "params": tracking.flatten(p.model_dump(mode="json")),
           "metrics": {}, "tags": {"lab": "serving",
                                   "serving.engine_command": " ".join(["-m", "llmarch_lab.llm.adapters.openai_http", *measured])}}
    levels = [{"level": lv, "req_per_s": rps, "ttft_ms_p99": 200.0 * lv, "e2e_ms_p50": 1000.0, "error_rate": 0.0}
              for lv, rps in ((1, 1.0), (2, 1.9), (4, 3.6))]
    reqs = pd.DataFrame({"level": [1.0, 2.0, 4.0] * 8, "ttft_ms": [200.0] * 24, "e2e_ms": [1000.0] * 24,
                         "tpot_ms": [50.0] * 24})
    s = records.Serving("r1", "e", "serve", engine, p.model, "concurrent", run["params"], levels, requests=reqs)
    comps = records.Components([s], [records.Guard("none")], [run], {})
    (tmp_path / "r.yaml").write_text("system: demo\nworkload: {peak_rps: 1, mean_rps: 0.5, prompt_tokens: 8, "
                                     "output_tokens: 8}\nslos: {ttft_ms_p99: 3000}\nbudget_usd_month: 500\n" + HW)
    ch = chooser.choose(requirements.load(tmp_path / "r.yaml"), comps)
    assert ch.feasible and ch.row().engine == engine
    cfg = bundle.config_from(ch)
    # slots: the run's own parallel (6), not the sweep's top level (4) as for unbatched engines
    assert (cfg.engine, cfg.slots, cfg.threads, cfg.extra_args) == (engine, 6, 2, extra)
    assert cfg.model_file == Path(served).name
    bundle.write(cfg, tmp_path / "bundle")
    comp = yaml.safe_load((tmp_path / "bundle" / "docker-compose.yaml").read_text())["services"]["engine"]
    # The measured command with the model under /models and the container's host and port.
    assert comp["command"] == engine_args.adapter_args(engine, f"/models/{Path(served).name}", cfg.served_name, "0.0.0.0",
                                                       8000, p.max_model_len, p.parallel, p.engine_threads) + extra
    swap = {served: f"/models/{Path(served).name}", "127.0.0.1": "0.0.0.0", "41234": "8000"}
    assert comp["command"] == [swap.get(x, x) for x in measured]  # only where it runs differs
    if engine == "ctranslate2":  # the converted folder is only known from the run's command
        run["tags"].pop("serving.engine_command")
        with pytest.raises(LabError, match="serving.engine_command"):
            bundle.config_from(ch)


def test_bundle_gateway_enforces_per_key_limits(tmp_path):
    """The bundle's gateway runs the same custom auth as the lab's gateway (keys.py, exercised live in
    tests/test_system_ratelimit.py): the config names it, the shim loads the shipped copy, compose
    and the chart mount the keys file and point LLMARCH_GATEWAY_KEYS at it."""
    from llmarch_lab.labs.guardrails.gateway import keys

    out = tmp_path / "bundle"
    bundle.write(dataclasses.replace(_cfg("openvino"), engine="llama-server", model_file="m.gguf"), out)
    cfg = yaml.safe_load((out / "gateway" / "config.yaml").read_text())
    assert cfg["general_settings"]["custom_auth"] == "lab_keys.user_api_key_auth"
    assert "/config/gateway_keys.py" in (out / "gateway" / "lab_keys.py").read_text()
    assert (out / "gateway" / "gateway_keys.py").read_text() == Path(keys.__file__).read_text()
    assert json.loads((out / "gateway-keys" / "keys.json").read_text()) == {}
    gw = yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["gateway"]
    assert gw["environment"]["LLMARCH_GATEWAY_KEYS"] == "/keys/keys.json" and "./gateway-keys:/keys:ro" in gw["volumes"]
    dep = next(d for d in yaml.safe_load_all((out / "k8s" / "gateway.yaml").read_text()) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "LLMARCH_GATEWAY_KEYS", "value": "/keys/keys.json"} in pod["containers"][0]["env"]
    assert {"name": "keys", "secret": {"secretName": "demo-gateway-keys"}} in pod["volumes"]
    cm = yaml.safe_load((out / "k8s" / "gateway-configmap.yaml").read_text())
    assert cm["data"]["gateway_keys.py"].strip() == Path(keys.__file__).read_text().strip()


def test_system_key_adds_a_key_and_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    from llmarch_lab.labs.guardrails.gateway import keys

    f = tmp_path / "keys.json"
    r = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "system", "key", str(f), "--alias", "tenant-a", "--rpm",
                        "600", "--max-parallel", "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-") and key not in f.read_text()
    assert json.loads(f.read_text())[keys.digest(key)] == {"alias": "tenant-a", "rpm_limit": 600, "tpm_limit": None,
                                                          "max_parallel_requests": 2}
    f.write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "system", "key", str(f), "--alias", "b"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and str(f) in r.stderr and "Traceback" not in r.stderr
    assert f.read_text() == "{not json" and not list(tmp_path.glob("*.partial"))
