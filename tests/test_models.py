"""Model registry: both embedded aliases load offline (HF_HUB_OFFLINE=1) and work for real."""

import os

import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import models


def test_offline_is_set():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_smollm2_alias_converts_once_and_answers():
    folder = models.smollm2_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()  # GGUF quantizer detached
    assert models.smollm2_dir() == folder  # cached: the second call reuses the folder
    assert models.resolve(models.SMOLLM2) == str(folder)
    model, tok = models.load_causal_lm(models.SMOLLM2, device="cpu", dtype="float32")
    assert model.num_parameters() > 100_000_000
    from llmarch_lab.labs.quickstart.lab import answer

    text, n, _ = answer(model, tok, "What is the capital of France? Answer in one word.", 8)
    assert "paris" in text.lower() and n >= 1


def test_minilm_alias_embeds():
    emb = models.load_embedder(models.MINILM, device="cpu")
    v = emb.encode(["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filing deadline"],
                   normalize_embeddings=True)
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_local_path_spec_loads(tmp_path):
    # a local folder works as a spec: the converted SmolLM2 folder is one
    tok = models.load_tokenizer(str(models.smollm2_dir()))
    assert tok("hello")["input_ids"]


@pytest.mark.parametrize("spec,needle", [
    ("no-such-org/no-such-model", "unknown model 'no-such-org/no-such-model'"),
    ("/nonexistent/folder", "no such local path"),
    ("", "non-empty string"),
])
def test_unknown_model_is_one_clear_line(spec, needle):
    with pytest.raises(LabError) as e:
        models.load_tokenizer(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_device_and_dtype_errors():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(LabError, match="CUDA is not available"):
            models.resolve_device("cuda")
    with pytest.raises(LabError, match="valid are"):
        models.resolve_device("tpu")
    with pytest.raises(LabError, match="valid are"):
        models.resolve_dtype("int3", "cpu")
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    assert models.resolve_dtype("auto", "cuda") == torch.bfloat16
