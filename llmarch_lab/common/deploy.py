"""The one deployment generator: a served engine (or any HTTP service) as a docker-compose service
and as a Kubernetes Deployment + Service, from the same few facts (image, command line, port,
health route, resources).

    compose_service("vllm/vllm-openai:v0.32.0", args, 8000, "/health", gpus=1, restart="unless-stopped")
    k8s_workload("llm", "vllm/vllm-openai:v0.32.0", args, 8000, "/health", gpus=1)

The serving lab's deploy files (labs/serving/deploy.py) and the system bundle's compose file
(system/bundle_files.py) are built here; the engine's command line comes from llm/engine_args.py.
The bundle's Kubernetes side is its Helm chart (files under system/templates/, filled from
values.yaml), checked by helm lint and the Kubernetes schema.
"""

from __future__ import annotations

from typing import Any


def compose_service(image: str, command: list[str], port: int, health: str, *, volumes: list[str] = (),
                    environment: dict | None = None, gpus: int = 0, cpus: str | None = None, memory: str | None = None,
                    healthcheck: dict | None = None, **extra: Any) -> dict:
    """A docker-compose service: the port published as itself, a curl health check on `health`,
    GPUs reserved (NVIDIA) or CPU/memory limited; `extra` keys (ipc, restart, ...) as given."""
    svc: dict[str, Any] = {"image": image, "command": list(command), "ports": [f"{port}:{port}"]}
    if environment:
        svc["environment"] = dict(environment)
    svc["volumes"] = list(volumes)
    restart = extra.pop("restart", None)
    svc.update(extra)
    svc["healthcheck"] = {"test": ["CMD", "curl", "-fsS", f"http://localhost:{port}{health}"],
                          **(healthcheck or {"interval": "10s", "timeout": "5s", "retries": 12})}
    if gpus:
        svc["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": gpus, "capabilities": ["gpu"]}]}}}
    elif cpus or memory:
        limits = {k: v for k, v in (("cpus", cpus), ("memory", memory and memory.replace("Gi", "G"))) if v}
        svc["deploy"] = {"resources": {"limits": limits}}
    if restart:
        svc["restart"] = restart
    return svc


def k8s_workload(name: str, image: str, args: list[str], port: int, health: str, *, gpus: int = 0,
                 env: list[dict] = (), container: str = "server", replicas: int = 1,
                 shm: str = "2Gi", ready_after_s: int = 60, live_after_s: int = 180) -> list[dict]:
    """A Kubernetes Deployment (readiness and liveness on `health`, GPUs as requests and limits, a
    memory-backed /dev/shm) and a ClusterIP Service on `port`."""
    labels = {"app": name}
    probe = {"httpGet": {"path": health, "port": port}, "periodSeconds": 10}
    c = {
        "name": container, "image": image, "args": list(args),
        "ports": [{"containerPort": port, "name": "http"}],
        "env": list(env),
        "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}} if gpus else {},
        "readinessProbe": {**probe, "initialDelaySeconds": ready_after_s},
        "livenessProbe": {**probe, "initialDelaySeconds": live_after_s, "failureThreshold": 6},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [c],
                                       "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": port}], "type": "ClusterIP"},
    }
    return [deployment, service]
