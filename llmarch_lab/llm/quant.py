"""The one place quantization configs are built (bitsandbytes, torchao), for every lab.

    from llmarch_lab.llm import quant
    qcfg, dtype, method = quant.config("nf4", "cpu", double_quant=True)
    model, tok = models.load_causal_lm(spec, dtype=dtype, quantization_config=qcfg)
    quant.nf4("float32", double_quant=False)       # QLoRA's base (fine-tuning lab)

`method` is a human-readable tag of exactly what was configured (logged with the run).
"""

from __future__ import annotations

from llmarch_lab import LabError

DTYPE_OF = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BNB = ("int8", "nf4", "fp4")
TORCHAO = ("torchao-int8-wo", "torchao-int4-wo")
MODES = (*DTYPE_OF, *BNB, *TORCHAO)


def nf4(compute_dtype: str, device: str, double_quant: bool = False):
    """bitsandbytes nf4 4-bit config (QLoRA's base); compute_dtype a torch dtype name or auto."""
    return config("nf4", device, compute_dtype, double_quant)[0]


def config(quant: str, device: str, compute_dtype: str = "auto", double_quant: bool = False,
           group_size: int = 64):
    """(transformers quantization config or None, dtype name for load_causal_lm, method tag).

    quant: one of MODES. compute_dtype: of the unquantized parts and of bnb 4-bit compute
    ("auto" = bfloat16 on CUDA, float32 elsewhere). double_quant: bnb 4-bit constants quantized
    too (QLoRA). group_size: torchao int4 weights per scale."""
    import torch

    if quant not in MODES:
        raise LabError(f"quantization mode {quant!r}: valid are {', '.join(MODES)}")
    compute = compute_dtype if compute_dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    if quant in DTYPE_OF:
        return None, DTYPE_OF[quant], f"torch {DTYPE_OF[quant]}"
    if quant in BNB:
        from transformers import BitsAndBytesConfig

        if quant == "int8":
            return BitsAndBytesConfig(load_in_8bit=True), compute, "bitsandbytes LLM.int8 (threshold 6.0)"
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant,
                                 bnb_4bit_compute_dtype=getattr(torch, compute),
                                 bnb_4bit_use_double_quant=double_quant)
        return cfg, compute, f"bitsandbytes 4-bit {quant}, double_quant={double_quant}"
    from transformers import TorchAoConfig

    if quant == "torchao-int8-wo":
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig()), compute, "torchao Int8WeightOnlyConfig (per-row)"
    if device.startswith("cuda"):
        from torchao.quantization import Int4WeightOnlyConfig
        from torchao.quantization.quantize_.workflows import Int4PackingFormat

        # tile_packed_to_4d = the tinygemm kernel in torch itself; torchao's default "plain"
        # format needs the separate mslk package. tinygemm wants bf16 activations.
        cfg = Int4WeightOnlyConfig(group_size=group_size, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)
        return TorchAoConfig(cfg), "bfloat16", f"torchao Int4WeightOnlyConfig (tinygemm, group {group_size})"
    # CPU: torchao 0.18's Int4WeightOnlyConfig has CUDA kernels only; IntxWeightOnlyConfig is its
    # CPU int4 weight-only path. Its default format keeps each int4 value in an int8 byte, so it
    # shows int4's quality at int8's memory (the packed CPU formats need torchao's C++ kernels).
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    cfg = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    return TorchAoConfig(cfg), compute, f"torchao IntxWeightOnlyConfig int4 group {group_size} (unpacked in int8)"
