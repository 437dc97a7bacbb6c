"""Task prompts and exact scoring shared by the labs (one definition, no copies).

    from llmarch_lab import tasks
    tasks.pubmedqa_user_text(question, abstract)   # the fine-tuning lab's yes/no/maybe prompt
    tasks.gsm8k_messages(question)                  # chat messages for a worked GSM8K answer
    tasks.gsm8k_extract("... The answer is 1,234.") # '1234' (None when no number is found)
    tasks.gsm8k_correct(pred, gold)                 # numeric match
"""

from __future__ import annotations

import re

PUBMEDQA_LABELS = ("yes", "no", "maybe")
PUBMEDQA_INSTRUCTION = "Answer the biomedical research question with yes, no or maybe, based on the abstract."


def pubmedqa_user_text(question: str, context: str) -> str:
    return f"{PUBMEDQA_INSTRUCTION}\n\nAbstract: {context}\n\nQuestion: {question}\nAnswer:"


GSM8K_INSTRUCTION = ("Solve the math word problem. Think step by step briefly, then finish with a line "
                     "'The answer is N.' where N is a number.")


def gsm8k_messages(question: str) -> list[dict]:
    return [{"role": "user", "content": f"{GSM8K_INSTRUCTION}\n\nProblem: {question}"}]


_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"


def _clean(x: str) -> str:
    x = x.replace(",", "").replace("$", "").rstrip(".")
    if "." in x:
        x = x.rstrip("0").rstrip(".") or "0"
    return x


def gsm8k_extract(text: str) -> str | None:
    """The final numeric answer of a worked solution: the number after 'answer is', '####' or in
    \\boxed{}, else the last number in the text (the usual GSM8K convention)."""
    for pat in (r"answer is[:\s]*\$?\\?\(?\s*(" + _NUM + ")", r"####\s*(" + _NUM + ")", r"\\boxed\{\s*(" + _NUM + ")"):
        found = re.findall(pat, text, flags=re.IGNORECASE)
        if found:
            return _clean(found[-1])
    nums = re.findall(_NUM, text)
    return _clean(nums[-1]) if nums else None


def gsm8k_correct(pred: str | None, gold: str) -> bool:
    if pred is None:
        return False
    try:
        return abs(float(pred) - float(_clean(gold))) < 1e-6
    except ValueError:
        return False
