"""The local side of the one LLM interface: a transformers causal LM in this process.

    from llmarch_lab import models
    from llmarch_lab.llm import local
    model, tok = models.load_causal_lm("smollm2-135m-instruct")
    local.warm_up(model, tok)                                  # the one warm-up policy
    g = local.chat(model, tok, [{"role": "user", "content": "Hi"}], max_new_tokens=32)
    g.text, g.output_tokens, g.prompt_tokens, g.seconds
    lp = local.label_logprobs(model, tok, prompts, ["yes", "no", "maybe"])   # n x 3 log-probs
    with local.torch_threads(1): ...                           # the one thread-pinning helper
    local.prefill_ms(model, ids, "cpu", repeats=3); local.decode_rates(model, tok, 8, 32, 3, "cpu")

Rolling NLL (perplexity) is `llm.perplexity`; quantization configs are `llm.quant`; the same
questions asked of a served model go through `llm.endpoint`. Heavy imports stay inside functions.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from llmarch_lab import LabError

# Fixed decode prompts (batch b uses the first b, cycling): short, varied, plain English.
PROMPTS = (
    "The history of the bridge began in", "A good way to learn a new language is",
    "The main causes of the storm were", "In the second half of the season, the team",
    "The recipe calls for flour, butter and", "Scientists studying the river found that",
    "The museum's new exhibition shows", "After the election, the new government",
)


@dataclass
class Generation:
    text: str
    output_tokens: int
    prompt_tokens: int
    seconds: float  # prefill + decode of the generate call
    token_ids: tuple = ()  # the new tokens (greedy-identity checks compare these)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with torch using `n` CPU threads (0 = leave as is), then restore.

    A latency-bound server runs one request per core: multi-threaded matmuls on a one-query batch
    mostly wait for each other, and on a busy CPU they stall (RAG measured p95 300 ms vs 25 ms)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield n or before
    finally:
        torch.set_num_threads(before)


def sync(device: str) -> None:
    """Wait for queued CUDA work, so wall-clock timings measure it (no-op on CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def chat_ids(tok, messages: list[dict]):
    """The chat-templated prompt, as tensors ready for `generate`."""
    return tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def generate(model, tok, enc, max_new_tokens: int, **generate_kw) -> Generation:
    """One greedy completion of already-encoded prompt tensors (reproducible from its inputs).
    generate_kw: more `model.generate` options, e.g. prompt_lookup_num_tokens or assistant_model
    (speculative decoding, benchmarks/assisted_generation.py)."""
    import torch

    n_prompt = int(enc["input_ids"].shape[1])
    enc = {k: v.to(model.device) for k, v in enc.items()}
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                             **generate_kw)
    sync(str(model.device))
    dt = time.perf_counter() - t0
    new = out[0][n_prompt:]
    return Generation(tok.decode(new, skip_special_tokens=True).strip(), int(new.shape[0]), n_prompt, dt,
                      tuple(new.tolist()))


def chat(model, tok, messages: list[dict] | str, max_new_tokens: int = 64) -> Generation:
    """A greedy chat completion: `messages` (or one user turn) through the model's chat template."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return generate(model, tok, chat_ids(tok, messages), max_new_tokens)


def warm_up(model, tok) -> float:
    """The one warm-up policy: a 2-token greedy chat completion before anything is timed (the
    first generate call pays one-off set-up costs: kernel selection, allocator, caches). Seconds."""
    return chat(model, tok, "Hi", max_new_tokens=2).seconds


def label_token_ids(tok, labels) -> list[int]:
    """First token of each label word as the assistant turn renders it (what fine-tuning teaches)."""
    ids = []
    for w in labels:
        msgs = [{"role": "user", "content": "q"}]
        pre = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": w}], tokenize=False)
        if not full.startswith(pre):
            raise LabError(f"tokenizer chat template: the assistant turn does not extend the prompt for {w!r}")
        ids.append(tok(full[len(pre):], add_special_tokens=False).input_ids[0])
    if len(set(ids)) != len(ids):
        raise LabError(f"tokenizer: the label words {tuple(labels)} share a first token; cannot score them apart")
    return ids


def label_logprobs(model, tok, prompts: list[str], labels, batch_size: int = 8, desc: str = "scoring"):
    """(n x len(labels)) float tensor: log-prob of each label's first token as the next token
    after each (already chat-templated) prompt. Batched with left padding, so the last position
    is the end of every prompt; only that position goes through the LM head."""
    import torch
    from tqdm.auto import tqdm

    label_ids = label_token_ids(tok, labels)
    side, tok.padding_side = tok.padding_side, "left"
    out = []
    try:
        model.eval()
        for i in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False):
            enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                # logits_to_keep=1: only the last position goes through the LM head (vocab 49k)
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()
            out.append(torch.log_softmax(logits, dim=-1)[:, label_ids].cpu())
    finally:
        tok.padding_side = side
    return torch.cat(out) if out else torch.empty(0, len(label_ids))


def prefill_ms(model, ids, device: str, repeats: int) -> list[float]:
    """Milliseconds of one forward pass over `ids` (KV cache built), after one warm-up."""
    import torch

    ids = ids.to(device)
    out = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            model(ids, use_cache=True)
            sync(device)
            if i:  # the first pass is the warm-up
                out.append((time.perf_counter() - t0) * 1000)
    return out


def decode_rates(model, tok, batch: int, new_tokens: int, repeats: int, device: str) -> list[float]:
    """Decode tokens/s of greedy generation for `batch` fixed prompts, one value per repeat.

    A logits processor timestamps every generation step; decode time is first step -> last step,
    so the prompt's prefill is excluded and (new_tokens - 1) * batch tokens are counted."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class StepClock(LogitsProcessor):
        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores):
            sync(device)
            self.times.append(time.perf_counter())
            return scores

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    tok.padding_side = "left"  # decoder-only batches are padded on the left
    enc = tok(prompts, return_tensors="pt", padding=True).to(device)
    rates = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            clock = StepClock()
            model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id, logits_processor=LogitsProcessorList([clock]))
            if i:  # the first generation is the warm-up
                rates.append((len(clock.times) - 1) * batch / (clock.times[-1] - clock.times[0]))
    return rates
