"""The one engine command-line builder: the flags every engine is started with, wherever it runs.

    llama_server_args("/models/m.gguf", "m", "0.0.0.0", 8080, ctx=2048, slots=4, threads=2)
    vllm_args("HuggingFaceTB/SmolLM2-135M-Instruct", "smol", "0.0.0.0", 8000, ctx=2048, slots=16)

The lab's own launch on loopback (llm/engines.py), the serving lab's deploy files
(labs/serving/deploy.py) and the system bundle (system/bundle.py) all build their engine
arguments here, so what is measured and what is shipped cannot drift apart.
"""

from __future__ import annotations


def llama_server_args(model: str, name: str, host: str, port: int, ctx: int, slots: int = 1,
                      threads: int | None = None) -> list[str]:
    """llama.cpp's llama-server. The context is shared by the slots (each gets ctx-size / parallel),
    so every slot gets the whole `ctx`; --metrics serves Prometheus text at /metrics."""
    args = ["--model", model, "--alias", name, "--host", host, "--port", str(port)]
    if threads:
        args += ["--threads", str(threads), "--threads-batch", str(threads)]
    return args + ["--parallel", str(slots), "--cont-batching", "--ctx-size", str(ctx * slots), "--metrics",
                   "--no-webui"]


def llama_cpp_python_args(model: str, name: str, host: str, port: int, ctx: int, threads: int) -> list[str]:
    """llama-cpp-python's OpenAI server (one request at a time)."""
    return ["--model", model, "--model_alias", name, "--host", host, "--port", str(port), "--n_threads", str(threads),
            "--n_ctx", str(ctx),
            # By default a new request interrupts the one being generated (a chat-UI choice);
            # a server under load must queue them instead.
            "--interrupt_requests", "False"]


def vllm_args(model: str, name: str, host: str, port: int, ctx: int, slots: int | None = None,
              dtype: str | None = None, gpus: int = 1, gpu_memory_utilization: float | None = None) -> list[str]:
    """vLLM's OpenAI server: `slots` caps the sequences it batches (--max-num-seqs), `gpus` > 1
    shards the model (--tensor-parallel-size)."""
    args = ["--model", model, "--served-model-name", name]
    if dtype:
        args += ["--dtype", dtype]
    args += ["--max-model-len", str(ctx)]
    if slots:
        args += ["--max-num-seqs", str(slots)]
    if gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    args += ["--host", host, "--port", str(port)]
    if gpus > 1:
        args += ["--tensor-parallel-size", str(gpus)]
    return args


def adapter_args(engine: str, model: str, name: str, host: str, port: int, ctx: int, slots: int = 1,
                 threads: int = 2) -> list[str]:
    """The lab's adapter for OpenVINO GenAI and CTranslate2 (llm/adapters/openai_http.py): `slots`
    is the most sequences batched together (OpenVINO's max_num_seqs, CTranslate2's batch size).
    Tuning flags (--max-batched-tokens, --cache-gb, --precision) go in engine_args."""
    return ["--backend", engine, "--model", model, "--name", name, "--host", host, "--port", str(port),
            "--threads", str(threads), "--max-model-len", str(ctx), "--max-num-seqs", str(slots)]
