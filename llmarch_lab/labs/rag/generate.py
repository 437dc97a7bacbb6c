"""Answer questions from retrieved contexts with any causal LM spec (default SmolLM2-135M).

    from llmarch_lab.labs.rag.generate import Generator
    gen = Generator("smollm2-135m-instruct", device="cpu")
    a = gen.answer("Does X cause Y?", ["passage 1", "passage 2"], max_new_tokens=64)
    a.text, a.output_tokens, a.prompt_tokens, a.seconds, a.passages_used

The prompt is `template` with {context} (the passages, numbered, one per paragraph) and
{question} filled in, sent as one user turn through the model's chat template; decoding is
greedy so an answer is reproducible from its parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.llm import local

DEFAULT_TEMPLATE = ("Answer the question using only the context below. Answer in one or two sentences.\n\n"
                    "Context:\n{context}\n\nQuestion: {question}")


def check_template(template: str) -> str:
    for field in ("{context}", "{question}"):
        if field not in template:
            raise LabError(f"prompt_template must contain {field} (got {template[:60]!r}...)")
    try:
        template.format(context="", question="")
    except (KeyError, IndexError, ValueError) as e:
        raise LabError(f"prompt_template: only {{context}} and {{question}} may appear in braces ({e})") from None
    return template


def format_context(passages: list[str]) -> str:
    return "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))


@dataclass
class Answer:
    text: str
    output_tokens: int
    prompt_tokens: int
    seconds: float  # prefill + decode: on a CPU the prompt of a few passages often costs the most
    passages_used: int  # the best passages that fit max_prompt_tokens


class Generator:
    """A loaded causal LM and its tokenizer; `answer` runs one greedy chat completion."""

    def __init__(self, spec: str = models.SMOLLM2, device: str = "cpu", dtype: str = "float32",
                 template: str = DEFAULT_TEMPLATE, max_prompt_tokens: int = 2048):
        self.template = check_template(template)
        self.max_prompt_tokens = max_prompt_tokens
        t0 = time.perf_counter()
        self.model, self.tok = models.load_causal_lm(spec, device=device, dtype=dtype)
        self.load_s = time.perf_counter() - t0

    def prompt(self, question: str, passages: list[str]) -> str:
        return self.template.format(context=format_context(passages), question=question)

    def encode(self, question: str, passages: list[str]):
        """Chat-templated prompt ids; the lowest-ranked passages are dropped until it fits."""
        passages = list(passages)
        while True:
            msgs = [{"role": "user", "content": self.prompt(question, passages)}]
            enc = local.chat_ids(self.tok, msgs)
            if enc["input_ids"].shape[1] <= self.max_prompt_tokens:
                return enc, len(passages)
            if len(passages) <= 1:
                raise LabError(f"prompt is {enc['input_ids'].shape[1]} tokens with one passage, over "
                               f"max_prompt_tokens={self.max_prompt_tokens}: lower chunk_size")
            passages = passages[:-1]

    def answer(self, question: str, passages: list[str], max_new_tokens: int = 64) -> Answer:
        enc, used = self.encode(question, passages)
        g = local.generate(self.model, self.tok, enc, max_new_tokens)
        return Answer(g.text, g.output_tokens, g.prompt_tokens, g.seconds, used)
