"""The larger offline models: Qwen GGUFs assembled from PyPI part wheels, checked before use."""

import hashlib
import zipfile

import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import gguf_parts, models

ALIAS = "qwen2.5-coder-0.5b-instruct"


def test_assembled_model_matches_its_recorded_hash_and_metadata():
    path = gguf_parts.assemble(ALIAS)  # `make model-qwen-0.5b` ran before the tests (make test)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    assert h.hexdigest() == gguf_parts.PARTED[ALIAS].sha256
    meta = gguf_parts.gguf_metadata(path)
    assert meta["architecture"] == "qwen2" and meta["size_label"] == "0.5B" and meta["chat_template"]
    assert 4e8 < meta["n_params"] < 8e8


def _fake_parts(tmp_path, m, swap=False):
    """Real wheel layout (one data/partNN.bin each) with small payloads, to test the joiner."""
    d = tmp_path / "wheels"
    d.mkdir()
    order = list(range(1, m.parts + 1))
    if swap:
        order[0], order[1] = order[1], order[0]
    for i, payload_i in zip(range(1, m.parts + 1), order):
        stem = m.dist.format(i=i).replace("-", "_")
        with zipfile.ZipFile(d / f"{stem}-{m.version}-py3-none-any.whl", "w") as z:
            z.writestr(f"{stem}/data/part{i:02d}.bin", f"chunk{payload_i};".encode())
    return d


def test_wrong_order_or_missing_part_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path / "cache"))
    m = gguf_parts.PARTED[ALIAS]
    joined = b"".join(f"chunk{i};".encode() for i in range(1, m.parts + 1))
    monkeypatch.setitem(gguf_parts.PARTED, ALIAS, gguf_parts.PartedModel(
        m.alias, m.dist, m.version, m.parts, m.filename, hashlib.sha256(joined).hexdigest(), m.size_label, m.description))
    bad = _fake_parts(tmp_path, m, swap=True)
    with pytest.raises(LabError, match="sha256"):
        gguf_parts.assemble(ALIAS, wheel_dir=bad)
    assert not gguf_parts.target(ALIAS).exists()
    assert not list((tmp_path / "cache" / "models").glob(".*"))  # the temporary folder is gone
    (next(bad.glob("*part3-*.whl"))).unlink()
    with pytest.raises(LabError, match="part 3 of 6"):
        gguf_parts.assemble(ALIAS, wheel_dir=bad)
    with pytest.raises(LabError, match="make model-qwen"):
        gguf_parts.gguf(ALIAS)


def test_unknown_alias_names_the_known_ones():
    with pytest.raises(LabError, match="qwen2.5-coder-1.5b-instruct"):
        gguf_parts.assemble("qwen-7b")
    assert ALIAS in models.ALIASES
