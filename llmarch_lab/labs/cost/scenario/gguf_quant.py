"""GGUF re-quantization with llama.cpp's own quantizer, for the precision lever of the cost lab.

    from llmarch_lab.labs.cost.scenario import gguf_quant
    base = gguf_quant.variant("qwen2.5-coder-1.5b-instruct", "F16")     # 16-bit, dequantized
    q3 = gguf_quant.variant("qwen2.5-coder-1.5b-instruct", "Q3_K_M")    # from that F16

The quantizer is `llama_model_quantize` from libllama, called through llama-cpp-python in the
llamacpp engine's environment (`make engine-llamacpp`): the same code as llama.cpp's
`llama-quantize`, which the llama-server build does not ship. Files are cached under
LLMARCH_CACHE_DIR/models/gguf-quant and written to a temporary name first, so a killed run
leaves nothing half-written.

Mind the source: the Qwen GGUFs on PyPI are Q4_K_M. Their F16 file holds exactly the Q4_K_M
values (dequantized), so it is the "16-bit" baseline a team would serve, and every other type is
made from it: a Q4_K_M made again from it lands on the source grid and measures no loss by
construction, so the lever uses other grids (Q8_0, Q4_0, Q3_K_M, Q2_K).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from llmarch_lab import LabError, paths

# llama.cpp's llama_ftype values (include/llama.h): the types the lever offers.
FTYPES = {"F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15, "Q3_K_M": 12, "Q2_K": 10}
SOURCE = "source"  # the packaged file itself (Q4_K_M for the Qwen parts, Q4_1 for SmolLM2)

_SCRIPT = """
import sys, llama_cpp as l
src, dst, ftype = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = l.llama_model_quantize_default_params()
p.ftype = ftype
p.allow_requantize = True
p.nthread = 2
rc = l.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(0 if rc == 0 else 3)
"""


def variant(model: str, qtype: str, timeout_s: float = 1800.0) -> Path:
    """The GGUF of `model` (an alias or a .gguf path) in `qtype`: "source" is the packaged file,
    F16 is the source dequantized, every other type is quantized from that F16. Made once and
    cached (the name carries the source file's stem)."""
    from llmarch_lab.llm import engines

    if qtype not in FTYPES and qtype != SOURCE:
        raise LabError(f"quantization type {qtype!r}: valid are {SOURCE}, {', '.join(FTYPES)}")
    src = engines.gguf_path(model)
    if qtype == SOURCE:
        return src
    out_dir = paths.cache_dir() / "models" / "gguf-quant"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = src.stem.removesuffix("-q4_k_m")
    target = out_dir / f"{stem}-{qtype.lower()}.gguf"
    if target.is_file():
        return target
    base = src if qtype == "F16" else variant(model, "F16", timeout_s)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    py = engines.engine_python("llamacpp")
    try:
        r = subprocess.run([str(py), "-c", _SCRIPT, str(base), str(tmp), str(FTYPES[qtype])],
                           capture_output=True, text=True, timeout=timeout_s)
        if r.returncode != 0 or not tmp.is_file():
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"gguf_quant: quantizing {base.name} to {qtype} failed: {last[0]}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
