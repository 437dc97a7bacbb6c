"""Quantization lab: what does int8 / 4-bit cost in quality, and what does it buy in speed and memory?

    llmarch-lab run experiments/quantization.yaml        # every mode, LLM and embedder, on CPU
    python benchmarks/quantization.py                    # the same sweep + comparison table and plots
    # or interactively: notebooks/10_quantization.ipynb

One run = one precision mode (`quant`) of one model (`target`):
- target=llm: a causal LM loaded through transformers' quantization configs (BitsAndBytesConfig,
  TorchAoConfig) on `models.load_causal_lm`. Measured: WikiText-2 test perplexity (strided
  sliding window, llmarch_lab.llm.perplexity), its change against the fp32 run of the same suite,
  weights footprint, peak RSS during evaluation, load time, prefill latency of a fixed prompt,
  greedy decode tokens/s at each batch size.
- target=embedder: a sentence-transformers model quantized in place with torchao. Measured:
  docs/s encoding Cranfield and dense-retrieval nDCG@10 (the RAG lab's ranx metrics).

A mode the device cannot run finishes as a run tagged `skipped` with `skip_reason`, and no
metrics. `report.report(suite)` turns a suite's runs into the comparison table, delta intervals and plots.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab.assets import datasets, models
from llmarch_lab.common.memory import PeakRSS, weights_mb
from llmarch_lab.config import EmbedderFields, ModelSpec
from llmarch_lab.llm import local, perplexity, quant
from llmarch_lab.results import Result
from llmarch_lab.store import tracking

Quant = Literal["fp32", "bf16", "fp16", "int8", "nf4", "fp4", "torchao-int8-wo", "torchao-int4-wo"]
LLM_QUANTS = Quant.__args__
EMBEDDER_QUANTS = ("fp32", "bf16", "int8", "torchao-int8-wo")
BNB, DTYPE_OF = quant.BNB, quant.DTYPE_OF


class QuantParams(EmbedderFields):
    lab = "quantization"
    key_metrics = ("quality.perplexity", "quality.ppl_delta_pct", "memory.weights_mb",
                   "throughput.decode_tok_per_s_b1", "quality.ndcg_at_10", "throughput.docs_per_s")

    # what to quantize
    target: Literal["llm", "embedder"] = Field("llm", description="llm: causal LM (perplexity, decode speed); embedder: sentence embedder (retrieval nDCG, docs/s).")
    quant: Quant = Field("fp32", description="Precision mode. llm: fp32 | bf16 | fp16 (GPU) | int8 (bnb LLM.int8) | nf4 | fp4 (bnb 4-bit) | torchao-int8-wo | torchao-int4-wo. embedder: fp32 | bf16 | int8 (torchao int8 dynamic activations + int8 weights) | torchao-int8-wo.")
    model: ModelSpec = models.SMOLLM2  # target=llm; embedder (target=embedder) and device: EmbedderFields
    threads: int = Field(0, ge=0, description="CPU threads for torch (0 = torch's default, one per core). On a shared machine 1 avoids OpenMP threads spin-waiting against other processes.")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="dtype of the unquantized parts and of bnb 4-bit compute; auto = float32 on CPU, bfloat16 on CUDA.")
    double_quant: bool = Field(False, description="bnb 4-bit: also quantize the quantization constants (QLoRA double quantization).")
    group_size: int = Field(64, description="torchao int4: weights per scale group (32, 64, 128 or 256; must divide the layer widths).")
    # perplexity (WikiText-2 test)
    max_length: int = Field(512, ge=16, le=131072, description="Sliding window length in tokens.")
    stride: int = Field(256, ge=1, description="Window step in tokens (<= max_length); each token is scored once, with >= max_length - stride context.")
    max_tokens: int = Field(4096, ge=0, description="First N tokens of WikiText-2 test to score (0 = all, about 300k for SmolLM2).")
    reference_fallback: bool = Field(True, description="No finished fp32 run of this suite with the same evaluation settings: compute the fp32 reference in this process (one more load + evaluation); False = no delta metric.")
    # speed
    prefill_tokens: int = Field(512, ge=1, description="Length of the fixed prefill prompt (the start of WikiText-2 test).")
    decode_new_tokens: int = Field(32, ge=2, description="Tokens generated per decode measurement (greedy, EOS ignored).")
    decode_batch_sizes: list[int] = Field([1, 8], min_length=1, description="Batch sizes for decode tokens/s; metric throughput.decode_tok_per_s_b<N> each.")
    repeats: int = Field(3, ge=1, le=100, description="Timed repeats per speed measurement (median reported), after one warm-up.")
    # embedder retrieval (Cranfield)
    max_docs: int = Field(0, ge=0, description="Random subset of Cranfield documents (0 = all 1400); a subset is easier, compare equal sizes only.")
    max_queries: int = Field(0, ge=0, description="Random subset of Cranfield queries (0 = all 225).")
    batch_size: int = Field(32, ge=1, le=4096, description="Documents per encoding batch.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.stride > self.max_length:
            raise ValueError(f"stride={self.stride} must be <= max_length={self.max_length}")
        if self.group_size not in (32, 64, 128, 256):
            raise ValueError(f"group_size={self.group_size}: valid are 32, 64, 128, 256")
        if self.target == "embedder" and self.quant not in EMBEDDER_QUANTS:
            raise ValueError(f"quant={self.quant!r} is not available for target=embedder "
                             f"(valid: {', '.join(EMBEDDER_QUANTS)})")
        if any(b < 1 for b in self.decode_batch_sizes):
            raise ValueError("decode_batch_sizes: every batch size must be >= 1")
        return self


# ----------------------------------------------------------------------------------- modes

def skip_reason(quant: str, device: str, target: str = "llm") -> str | None:
    """Why `device` cannot run `quant` (None = it can). Decided before loading anything."""
    if quant == "fp16" and device == "cpu":
        return ("fp16 is a GPU mode: CPUs have no fast fp16 matmul (torch emulates it), so its speed "
                "would mislead; run it with device=cuda")
    if target == "llm" and quant in BNB:
        if importlib.util.find_spec("bitsandbytes") is None:
            return "bitsandbytes is not installed (pip install 'llmarch-lab[quant]')"
        if device == "mps":
            return "bitsandbytes has no MPS backend"
    if quant.startswith("torchao") or (target == "embedder" and quant == "int8"):
        if importlib.util.find_spec("torchao") is None:
            return "torchao is not installed (pip install 'llmarch-lab[quant]')"
    if target == "llm" and quant == "torchao-int4-wo" and device.startswith("cuda"):
        import torch

        if torch.cuda.get_device_capability(device)[0] < 8:
            return "torchao int4 (tinygemm) needs a GPU of compute capability >= 8.0"
    return None


def quantization_config(p: QuantParams, device: str):
    """(transformers quantization config or None, dtype name for load_causal_lm, method tag)."""
    return quant.config(p.quant, device, p.compute_dtype, p.double_quant, p.group_size)


# ------------------------------------------------------------------------------------ LLM

def reference(p: QuantParams, metric: str, match: dict) -> tuple[float, str] | None:
    """(value, run id) of `metric` in the newest finished fp32 run of this suite whose parameters
    equal `match` (the evaluation settings), or None."""
    for r in tracking.search(tracking.current_suite(), tags={"lab": QuantParams.lab},
                             params={"quant": "fp32", "target": p.target, "device": p.device, **match}):
        if metric in r["metrics"] and r["tags"].get("skipped") != "true":
            return r["metrics"][metric], r["run_id"]
    return None


def run_llm(p: QuantParams, res: Result) -> None:
    import numpy as np
    import pandas as pd
    import torch

    device = models.resolve_device(p.device)
    qcfg, dtype, method = quantization_config(p, device)
    res.tags.update({"quant_method": method, "model": p.model})
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    (model, tok), load_s = models.timed(models.load_causal_lm, p.model, device=device, dtype=dtype,
                                       quantization_config=qcfg)
    res.add("latency.load_s", load_s)
    res.add("memory.weights_mb", weights_mb(model))

    text = datasets.wikitext2_test()
    ids = perplexity.tokenize(tok, text, p.max_tokens)
    with PeakRSS() as rss:
        ppl = perplexity.strided_perplexity(model, ids, p.max_length, p.stride)
    res.add("quality.perplexity", ppl.perplexity)
    res.add("memory.peak_rss_mb", rss.mb)
    res.tags["ppl_scored_tokens"] = str(ppl.scored_tokens)
    res.tables["ppl_windows"] = ppl.windows

    prompt = perplexity.tokenize(tok, text, p.prefill_tokens)
    pre = local.prefill_ms(model, prompt, device, p.repeats)
    res.add("latency.prefill_ms_p50", float(np.median(pre)))
    speed = [{"phase": "prefill", "batch": 1, "tokens": prompt.shape[1], "repeat": i, "value": v, "unit": "ms"}
             for i, v in enumerate(pre)]
    for b in p.decode_batch_sizes:
        rates = local.decode_rates(model, tok, b, p.decode_new_tokens, p.repeats, device)
        res.add(f"throughput.decode_tok_per_s_b{b}", float(np.median(rates)))
        speed += [{"phase": "decode", "batch": b, "tokens": p.decode_new_tokens, "repeat": i, "value": v,
                   "unit": "tok/s"} for i, v in enumerate(rates)]
    res.tables["speed"] = pd.DataFrame(speed)
    if device.startswith("cuda"):
        res.add("memory.peak_gpu_mb", torch.cuda.max_memory_allocated() / 2**20)
    del model
    gc.collect()

    match = {"model": p.model, "max_length": p.max_length, "stride": p.stride, "max_tokens": p.max_tokens}
    _delta(p, res, "quality.perplexity", "quality.ppl_delta_pct", match, ppl.perplexity,
           lambda: _fp32_perplexity(p, device, ids))


def _fp32_perplexity(p: QuantParams, device: str, ids) -> float:
    model, _ = models.load_causal_lm(p.model, device=device, dtype="float32")
    try:
        return perplexity.strided_perplexity(model, ids, p.max_length, p.stride).perplexity
    finally:
        del model
        gc.collect()


def _delta(p: QuantParams, res: Result, metric: str, delta_name: str, match: dict, value: float, compute):
    """delta_name = 100 * (value / fp32 value - 1), the fp32 value from the same suite, else
    computed in this process (tag `reference` says which)."""
    if p.quant == "fp32":
        ref, how = value, "self (this run is the fp32 reference)"
    elif (found := reference(p, metric, match)) is not None:
        ref, how = found[0], f"run {found[1]} (fp32, same suite)"
    elif p.reference_fallback:
        ref, how = compute(), "computed in-process (no finished fp32 run in this suite)"
    else:
        res.tags["reference"] = "none: no finished fp32 run in this suite and reference_fallback=False"
        return
    res.tags["reference"] = how
    res.add(delta_name, 100.0 * (value / ref - 1.0))


# ------------------------------------------------------------------------------- embedder

def load_embedder(p: QuantParams, device: str):
    """(SentenceTransformer quantized in place per `quant`, method tag)."""
    import torch

    emb = models.load_embedder(p.embedder, device=device)
    if p.quant in DTYPE_OF:
        return emb.to(getattr(torch, DTYPE_OF[p.quant])), f"torch {DTYPE_OF[p.quant]}"
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    if p.quant == "int8":
        quantize_(emb, Int8DynamicActivationInt8WeightConfig())
        return emb, "torchao Int8DynamicActivationInt8WeightConfig (all Linear layers)"
    quantize_(emb, Int8WeightOnlyConfig())
    return emb, "torchao Int8WeightOnlyConfig (all Linear layers)"


def run_embedder(p: QuantParams, res: Result) -> None:
    import numpy as np

    from llmarch_lab.assets import corpora
    from llmarch_lab.common import ir

    device = models.resolve_device(p.device)
    (emb, method), load_s = models.timed(load_embedder, p, device)
    res.tags.update({"quant_method": method, "embedder": p.embedder})
    res.add("latency.load_s", load_s)
    res.add("memory.weights_mb", weights_mb(emb))
    corpus = corpora.load("cranfield", "title+text", p.max_docs, p.max_queries, p.seed)
    docs = corpus.docs.text.tolist()
    emb.encode(docs[: p.batch_size], batch_size=p.batch_size)  # warm-up
    with PeakRSS() as rss:
        local.sync(device)
        t0 = time.perf_counter()
        doc_vecs = emb.encode(docs, batch_size=p.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=True)
        local.sync(device)
        res.add("throughput.docs_per_s", len(docs) / (time.perf_counter() - t0))
        q_vecs = emb.encode(corpus.queries.text.tolist(), batch_size=p.batch_size,
                            normalize_embeddings=True, convert_to_numpy=True)
    res.add("memory.peak_rss_mb", rss.mb)
    sims = q_vecs.astype(np.float32) @ doc_vecs.astype(np.float32).T  # cosine: vectors are unit length
    top = np.argsort(-sims, axis=1)[:, :100]
    ids = corpus.docs.doc_id.tolist()
    run = {q: {ids[j]: float(sims[i, j]) for j in top[i]} for i, q in enumerate(corpus.queries.qid)}
    means, per_query = ir.ir_metrics(corpus.qrels, run, k=10)
    for k, v in means.items():
        res.add(k, v)
    res.tables["per_query"] = per_query
    res.tags["docs"], res.tags["queries"] = str(len(docs)), str(len(corpus.queries))
    del emb
    gc.collect()
    match = {"embedder": p.embedder, "max_docs": p.max_docs, "max_queries": p.max_queries, "seed": p.seed}
    _delta(p, res, "quality.ndcg_at_10", "quality.ndcg_delta_pct", match, means["quality.ndcg_at_10"],
           lambda: _fp32_ndcg(p))


def _fp32_ndcg(p: QuantParams) -> float:
    sub = Result()
    run_embedder(p.model_copy(update={"quant": "fp32"}), sub)
    return sub.metrics["quality.ndcg_at_10"]


# ------------------------------------------------------------------------------------ run

def run(p: QuantParams) -> Result:
    import torch

    torch.manual_seed(p.seed)
    device = models.resolve_device(p.device)
    res = Result(tags={"quant": p.quant, "target": p.target})
    why = skip_reason(p.quant, device, p.target)
    if why:
        res.tags.update({"skipped": "true", "skip_reason": why})
        return res
    with local.torch_threads(p.threads) as threads:  # leaves the process as it found it
        (run_llm if p.target == "llm" else run_embedder)(p, res)
    res.tags["torch_threads"] = str(threads)
    return res
