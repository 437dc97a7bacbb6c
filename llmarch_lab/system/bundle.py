"""The deployment bundle of a chosen system, in one folder, and its validation.

    cfg = bundle.config_from(choice)              # BundleConfig from the recommended candidate
    files = bundle.write(cfg, out / "bundle")     # docker-compose, Helm chart, k8s/, prometheus/, grafana/, RUNBOOK.md
    report = bundle.validate(out / "bundle")      # parse, promtool, helm render + lint, Kubernetes schema

Layout (bundle/):
  docker-compose.yaml          engine, guard service, LiteLLM gateway, Prometheus (one host)
  engine/Dockerfile            the engine's image, for engines without a public one (the lab's adapter)
  gateway/config.yaml          LiteLLM: the model behind the guard hook, Prometheus callback
  gateway/lab_guard_hook.py    the shim LiteLLM loads; it loads guardrails/gateway/hook.py (mounted)
  gateway/lab_keys.py          the custom-auth shim: per-key limits and body checks (gateway_keys.py)
  gateway-keys/keys.json       the keys file (empty: only the master key; `llmarch-lab system key`)
  chart/                       Helm chart: values.yaml holds the chosen configuration
  k8s/                         the chart rendered by Helm's own engine (helm-python-sdk), per template
  prometheus/prometheus.yml    scrape config; prometheus/alerts.yml: SLO burn and saturation rules
  grafana/dashboard.json       TTFT / TPOT / throughput / queue / KV cache / errors
  RUNBOOK.md                   what each alert means, first steps
  VALIDATION.md                what was checked here and how (written by validate())

The files themselves are generated in bundle_files.py. Engine metric names come from its METRICS,
per engine, with where each set was checked against a live scrape (`verified`). The gateway's
TTFT/latency/error series are LiteLLM's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import yaml

from llmarch_lab import LabError, registry
from llmarch_lab.system.bundle_files import (
    ENGINES,
    METRICS,
    TEMPLATES,
    VERIFIED,
    BundleConfig,
    alert_rules,
    compose,
    dashboard,
    litellm_config,
    prometheus_config,
    template,
    values,
)


def config_from(choice) -> BundleConfig:
    import math

    from llmarch_lab.llm import engines
    from llmarch_lab.system.verify import serving_params

    if not choice.feasible:
        raise LabError("bundle: no system meets the requirements; no bundle is written")
    req, row = choice.req, choice.row()
    serving = next(s for s in choice.comps.serving if s.run_id == row.serving_run)
    p = serving_params(serving.params)
    hw = next(h for h in req.hardware if h.name == row.hardware)
    e = ENGINES[p.engine]
    return BundleConfig(
        system=req.system, engine=p.engine, model=p.model, model_file=_model_file(choice, serving, p), replicas=int(row.replicas),
        max_replicas=max(int(row.replicas), min(req.sizing.max_replicas, 2 * int(row.replicas))),
        # batched engines: the batch size they were measured with; else one slot per request of the top level
        slots=p.parallel if p.engine in engines.BATCHED else max(1, math.ceil(float(max(lv["level"] for lv in serving.levels)))),
        threads=p.engine_threads,
        ctx=p.max_model_len, cpu=hw.cpu, memory=hw.memory, gpus=hw.gpus, guard=row.guard,
        pii_config=req.safety.pii_config, slos=req.slos.model_dump(),
        extra_args=list(p.engine_args) if e["as_measured"] else [],
        usd_per_1m_tokens=float(row.usd_per_1m_tokens) if math.isfinite(float(row.usd_per_1m_tokens)) else 0.0)


def _model_file(choice, serving, p) -> str:
    """What the engine serves from /models (ENGINES[...]["weights"]): the GGUF's file name, the
    CTranslate2 folder the measured run served (its name in the run's serving.engine_command tag:
    the lab's cache folder made by engines.ct2_folder, copied to the models volume), or vLLM's
    Hugging Face id (deploy_model)."""
    weights = ENGINES[p.engine]["weights"]
    if weights == "gguf":
        from llmarch_lab.llm.engines import gguf_path

        return gguf_path(p.model).name
    if weights == "hf":
        return p.deploy_model
    run = next((r for r in choice.comps.runs if r["run_id"] == serving.run_id), None)
    cmd = ((run or {}).get("tags") or {}).get("serving.engine_command", "").split()
    if "--model" not in cmd[:-1]:
        raise LabError(f"bundle: serving run {serving.run_id} has no serving.engine_command tag with --model: "
                       f"which {p.engine} model folder it served is unknown")
    return Path(cmd[cmd.index("--model") + 1]).name


# ----------------------------------------------------------------------------- writing

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
        litellm_proxy.write_shim(tmp / "gateway" / "lab_keys.py", "/config/gateway_keys.py", "llmarch_gateway_keys",
                                 "user_api_key_auth", "auth_function", writer="llmarch-lab bundle")
        shutil.copy(registry.service("guardrails.keys_file"), tmp / "gateway" / "gateway_keys.py")
        put("gateway-keys/keys.json", "{}\n")
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
        for f in ("lab_guard_hook.py", "guardrails_gateway.py", "guard.json", "lab_keys.py", "gateway_keys.py"):
            shutil.copy(tmp / "gateway" / f, tmp / "chart" / "files" / f)
        put_yaml("prometheus/prometheus.yml", prometheus_config(c, f"engine:{eport}", "gateway:4000"))
        put_yaml("prometheus/alerts.yml", alert_rules(c))
        put("grafana/dashboard.json", json.dumps(dashboard(c), indent=1))
        put("RUNBOOK.md", template("RUNBOOK.md").format(system=c.system, engine=c.engine, model=c.model, replicas=c.replicas,
                                         slots=c.slots, guard=c.guard, model_file=c.model_file,
                                         slos=", ".join(f"{k} {v:g}" for k, v in c.slos.items() if v is not None)))
        put("guard/Dockerfile", template("guard/Dockerfile"))
        if ENGINES[c.engine].get("dockerfile"):  # an engine without a public image (the lab's adapter)
            put("engine/Dockerfile", template(ENGINES[c.engine]["dockerfile"]))
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
