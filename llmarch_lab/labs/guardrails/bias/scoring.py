"""Exact log-likelihoods from a transformers causal LM: continuations after a context, and the
options of a multiple-choice prompt (its key/value cache computed once and shared by the options).

    sc = Scorer.load("smollm2-135m-instruct")         # model in eval mode, fp32 on CPU
    sc.continuations([(ctx_ids, cont_ids), ...])     # [(sum log-prob, tokens), ...] in input order
    sc.sentences(["The poor are ...", ...])          # the same, each after the document-start token
    sc.options(prompt_ids, [opt_ids, ...])           # [(sum log-prob, tokens)] of each option

Why transformers and not llama.cpp: the venv has no llama-cpp-python (llama.cpp runs as a server in
its own environment, and an OpenAI-compatible server returns no prompt log-probs), while
transformers loads the same GGUF dequantized to fp32 (`models.load_causal_lm` via `gguf_file=`) and
gives every token's log-probability exactly. A sentence is scored after the model's document
boundary token (`<|endoftext|>` for SmolLM2 and Qwen2.5; else BOS, else EOS), as lm-evaluation-harness
scores a continuation with an empty context after a prefix token, so its first token counts too.
Batches are left-padded with explicit position ids; only the positions that predict continuation
tokens go through the LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmarch_lab import LabError

DOC_START_TOKENS = ("<|endoftext|>",)


def doc_start_id(tok) -> int:
    """The token a document starts after: <|endoftext|> when the vocabulary has it, else BOS, else EOS."""
    vocab = tok.get_vocab()
    for t in DOC_START_TOKENS:
        if t in vocab:
            return vocab[t]
    for tid in (tok.bos_token_id, tok.eos_token_id):
        if tid is not None:
            return tid
    raise LabError("tokenizer has no <|endoftext|>, BOS or EOS token to start a sentence after")


@dataclass
class Scorer:
    model: object
    tok: object
    key: str  # names the weights for the score cache, e.g. "smollm2-135m-instruct"

    @classmethod
    def load(cls, spec: str) -> "Scorer":
        from llmarch_lab.assets import models

        model, tok = models.load_causal_lm(spec, device="cpu", dtype="float32")
        return cls(model, tok, spec)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def chat_prompt(self, user: str) -> list[int]:
        """Token ids of one user turn through the chat template, ready for the assistant's reply."""
        text = self.tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                            tokenize=False)
        return self.encode(text)

    def sentences(self, texts: list[str], batch_size: int = 16) -> list[tuple[float, int]]:
        start = [doc_start_id(self.tok)]
        return self.continuations([(start, self.encode(t)) for t in texts], batch_size)

    def continuations(self, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> list[tuple[float, int]]:
        """(sum of log p(continuation token | everything before), continuation tokens) per pair."""
        for ctx, cont in pairs:
            if not ctx or not cont:
                raise LabError("scoring: every context and continuation needs at least one token")
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out: list[tuple[float, int] | None] = [None] * len(pairs)
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            for i, v in zip(idx, self._batch([pairs[i] for i in idx])):
                out[i] = v
        return out  # type: ignore[return-value]

    def _batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, int]]:
        import torch

        seqs = [ctx + cont for ctx, cont in pairs]
        width = max(len(s) for s in seqs)
        keep = max(len(cont) for _, cont in pairs) + 1
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):  # left padding: every continuation ends at the last position
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
        res = []
        for r, (_, cont) in enumerate(pairs):
            n = len(cont)
            rows = logp[r, keep - n - 1: keep - 1]  # position j predicts token j + 1
            res.append((float(rows.gather(-1, torch.tensor(cont)[:, None]).sum()), n))
        return res

    def options(self, prompt: list[int], options: list[list[int]]) -> list[tuple[float, int]]:
        """(sum log-prob, tokens) of each option as the continuation of `prompt`: the prompt runs once
        and its key/value cache is repeated for the options (the same numbers as `continuations`)."""
        import torch

        if not prompt or any(not o for o in options):
            raise LabError("scoring: the prompt and every option need at least one token")
        k, width = len(options), max(len(o) for o in options)
        with torch.inference_mode():
            first = self.model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
            first_logp = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
            cache = first.past_key_values
            cache.batch_repeat_interleave(k)
            ids = torch.zeros((k, width), dtype=torch.long)
            mask = torch.zeros((k, len(prompt) + width), dtype=torch.long)
            mask[:, :len(prompt)] = 1
            for r, o in enumerate(options):  # right padding: pads come after every real token
                ids[r, :len(o)] = torch.tensor(o)
                mask[r, len(prompt):len(prompt) + len(o)] = 1
            pos = torch.arange(len(prompt), len(prompt) + width).expand(k, width)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                                use_cache=False).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
        res = []
        for r, o in enumerate(options):
            total = float(first_logp[o[0]])
            if len(o) > 1:
                total += float(logp[r, :len(o) - 1].gather(-1, torch.tensor(o[1:])[:, None]).sum())
            res.append((total, len(o)))
        return res
