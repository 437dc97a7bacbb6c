"""Answer quality against a reference answer: SQuAD-style token F1 and the MiniLM cosine."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def answer_tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, punctuation and articles out, whitespace split."""
    return _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split()


def token_f1(answer: str, reference: str) -> float:
    """SQuAD v1.1 token F1 between an answer and one reference (0.0 when either is empty)."""
    a, r = answer_tokens(answer), answer_tokens(reference)
    same = sum((Counter(a) & Counter(r)).values())
    if not a or not r or same == 0:
        return 0.0
    p, rec = same / len(a), same / len(r)
    return 2 * p * rec / (p + rec)


def minilm_cosine(answers: list[str], references: list[str]) -> list[float]:
    """all-MiniLM-L6-v2 cosine per (answer, reference) pair (sentence-transformers, normalised,
    texts truncated at the model's 256 word pieces)."""
    import numpy as np

    from llmarch_lab.assets import models

    if len(answers) != len(references):
        raise ValueError(f"minilm_cosine: {len(answers)} answers for {len(references)} references")
    if not answers:
        return []
    st = models.load_embedder(models.MINILM, device="cpu")
    a = st.encode([str(x) for x in answers], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    r = st.encode([str(x) for x in references], normalize_embeddings=True, convert_to_numpy=True,
                  show_progress_bar=False)
    return [float(x) for x in np.sum(a * r, axis=1)]
