"""Cheap pair features of (query, candidate) for the verifier."""

from __future__ import annotations

import re

# --------------------------------------------------------------------------------------------
# Cheap pair features for the verifier. Hand-written: they are a dozen regex/set operations on
# two short questions, and no library computes this particular set (token, number, negation,
# question-word, proper-noun and char-trigram agreement) in one call.
# --------------------------------------------------------------------------------------------

_TOK = re.compile(r"[a-z0-9]+")
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_CAP = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][A-Za-z0-9]+")
_NEG = frozenset("not no never nothing nobody none nor without cannot neither".split())
_QW = frozenset("what how why which who whom whose when where is are am can could do does did should would will "
                "was were has have had may might must shall".split())
FEATURES = ("cos", "rank", "gap_top", "margin_next", "jac_tok", "jac_content", "n_only_q", "n_only_c", "diff_frac",
            "jac_bigram", "num_any", "num_equal", "num_jac", "neg_mismatch", "qw_same", "len_ratio", "tok_diff",
            "jac_char3", "caps_jac", "caps_only_q", "caps_only_c", "exact_norm")


def _stop():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _QW


class _TextInfo:
    __slots__ = ("norm", "toks", "content", "bigrams", "nums", "neg", "qw", "nchar", "char3", "caps")

    def __init__(self, text: str, stop: frozenset):
        low = text.lower().replace("n't", " not").replace("can not", "cannot")
        toks = _TOK.findall(low)
        self.norm = " ".join(toks)
        self.toks = frozenset(toks)
        self.content = frozenset(t for t in toks if t not in stop)
        self.bigrams = frozenset(zip(toks, toks[1:]))
        self.nums = frozenset(_NUM.findall(text))
        self.neg = sum(t in _NEG for t in toks)
        self.qw = next((t for t in toks if t in _QW), "")
        self.nchar = max(len(text), 1)
        s = f" {self.norm} "
        self.char3 = frozenset(s[i:i + 3] for i in range(len(s) - 2))
        self.caps = frozenset(c.lower() for c in _CAP.findall(text.strip()))


def _jac(a, b, empty: float = 1.0) -> float:
    u = len(a | b)
    return len(a & b) / u if u else empty


class FeatureMaker:
    """Features of (query, candidate, cosine, rank in the query's top-k list)."""

    def __init__(self):
        self._stop = _stop()
        self._memo: dict[str, _TextInfo] = {}

    def info(self, text: str) -> _TextInfo:
        i = self._memo.get(text)
        if i is None:
            if len(self._memo) > 500_000:
                self._memo.clear()
            i = self._memo[text] = _TextInfo(text, self._stop)
        return i

    def row(self, q: str, c: str, cos: float, rank: int, top_cos: float, next_cos: float) -> list[float]:
        a, b = self.info(q), self.info(c)
        only_q, only_c = len(a.content - b.content), len(b.content - a.content)
        union_c = len(a.content | b.content)
        return [cos, rank, top_cos - cos, cos - next_cos, _jac(a.toks, b.toks), _jac(a.content, b.content),
                only_q, only_c, (only_q + only_c) / union_c if union_c else 0.0, _jac(a.bigrams, b.bigrams),
                float(bool(a.nums or b.nums)), float(a.nums == b.nums), _jac(a.nums, b.nums),
                float((a.neg > 0) != (b.neg > 0)), float(a.qw == b.qw), min(a.nchar, b.nchar) / max(a.nchar, b.nchar),
                abs(len(a.toks) - len(b.toks)), _jac(a.char3, b.char3), _jac(a.caps, b.caps),
                len(a.caps - b.caps), len(b.caps - a.caps), float(a.norm == b.norm)]

    def matrix(self, queries, cand_texts, cand_sims, progress: bool = False):
        """Features of every (query i, candidate j) with a candidate: rows in (i, j) order, plus (i, j)."""
        import numpy as np
        from tqdm.auto import tqdm

        rows, where = [], []
        for i, q in enumerate(tqdm(queries, desc="pair features", disable=not progress, mininterval=2)):
            texts, sims = cand_texts[i], cand_sims[i]
            n = len(texts)
            for j in range(n):
                if texts[j] is None:
                    continue
                nxt = max(float(sims[j + 1]), 0.0) if j + 1 < n else 0.0  # an absent k-th entry has sim -1
                rows.append(self.row(q, texts[j], float(sims[j]), j, float(sims[0]), float(nxt)))
                where.append((i, j))
        x = np.asarray(rows, dtype=np.float32).reshape(-1, len(FEATURES))
        return x, where
