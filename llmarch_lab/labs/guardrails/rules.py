"""Business-rule validators for LLM input and output, and a RAG groundedness check.

    from llmarch_lab.labs.guardrails import rules
    ruleset = rules.RuleSet([*rules.banned_topics({"weapons": ["bomb", "rifle"]},
                                              patterns={"self_harm": [r"\bkill (?:my|your)self\b"]}),
                         rules.ForbiddenPhrases(["as an AI language model"]),
                         rules.MaxChars(2000), rules.MaxTokens(512)])
    report = ruleset.check(text)          # report.passed; report.violations[0].rule, .span, .excerpt

    g = rules.Groundedness()            # all-MiniLM-L6-v2, threshold calibrated on PubMedQA
    res = g.check(answer, contexts)     # res.grounded, res.fraction, res.sentences (per-sentence scores)
    rules.evaluate_groundedness(200)    # AUC / accuracy of the check on real PubMedQA pairs

Every rule takes any input: str, bytes (decoded as UTF-8 with errors replaced), None, emoji,
100k characters, and returns a `Verdict` (rule name, passed, the first offending span as
character offsets into the decoded text, all spans, the offending excerpt); none raises.
The same rules serve input (a user prompt) and output (a model reply): they only see text.

Keywords and phrases are escaped and matched case-insensitively on word boundaries with any
whitespace between words, so they cannot backtrack badly. Caller-supplied regex patterns are
compiled as given: Python's `re` has no timeout, so a pattern with nested quantifiers can take
very long on a 100k-character input; keep patterns linear. Obfuscation (b0mb, homoglyphs) is
not handled: these are exact rules, not a classifier.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from llmarch_lab import LabError

MAX_SPANS = 50  # spans kept per verdict (a 100k-char input can match thousands of times)


def as_text(x) -> str:
    """Any input as text: bytes are decoded as UTF-8 with errors replaced, None is ''."""
    if x is None:
        return ""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("utf-8", errors="replace")
    return x if isinstance(x, str) else str(x)


@dataclass(frozen=True)
class Verdict:
    """One rule on one text. `span` is the first offending (start, end), None when it passed."""

    rule: str
    passed: bool
    span: tuple[int, int] | None = None
    excerpt: str = ""  # the offending text (at most 200 chars)
    spans: tuple = ()  # every offending span, at most MAX_SPANS
    detail: str = ""


def _verdict(rule: str, text: str, spans: list[tuple[int, int]], detail: str = "") -> Verdict:
    if not spans:
        return Verdict(rule, True)
    s, e = spans[0]
    return Verdict(rule, False, (s, e), text[s:e][:200], tuple(spans[:MAX_SPANS]), detail)


def _phrase_regex(phrase: str) -> str:
    """A keyword or phrase as a regex: escaped, any whitespace between words, word boundaries
    where the phrase starts or ends with a word character."""
    words = phrase.split()
    if not words:
        raise LabError(f"empty keyword or phrase {phrase!r}")
    body = r"\s+".join(re.escape(w) for w in words)
    left = r"\b" if re.match(r"\w", words[0]) else ""
    right = r"\b" if re.search(r"\w$", words[-1]) else ""
    return left + body + right


def _compile(keywords: Iterable[str], patterns: Iterable[str], where: str) -> re.Pattern | None:
    parts = [_phrase_regex(as_text(k)) for k in keywords or ()]
    for p in patterns or ():
        try:
            re.compile(p)
        except re.error as e:
            raise LabError(f"{where}: bad regex {p!r}: {e}") from None
        parts.append(f"(?:{p})")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _find(rx: re.Pattern | None, text: str) -> list[tuple[int, int]]:
    if rx is None:
        return []
    spans = []
    for m in rx.finditer(text):
        if m.end() > m.start():  # a pattern that can match empty must not flag every position
            spans.append(m.span())
            if len(spans) >= MAX_SPANS:
                break
    return spans


class BannedTopic:
    """A topic the text must not touch: keyword/phrase lists and/or regex patterns."""

    def __init__(self, topic: str, keywords: Iterable[str] = (), patterns: Iterable[str] = ()):
        self.topic = str(topic)
        self.rule = f"banned_topic:{self.topic}"
        self._rx = _compile(keywords, patterns, self.rule)
        if self._rx is None:
            raise LabError(f"{self.rule}: give at least one keyword or pattern")

    def check(self, text) -> Verdict:
        t = as_text(text)
        return _verdict(self.rule, t, _find(self._rx, t), f"topic {self.topic!r} mentioned")


def banned_topics(keywords: Mapping[str, Iterable[str]] | None = None,
                  patterns: Mapping[str, Iterable[str]] | None = None) -> list[BannedTopic]:
    """One BannedTopic per topic named in either mapping (topic -> keywords, topic -> regexes)."""
    keywords, patterns = dict(keywords or {}), dict(patterns or {})
    return [BannedTopic(t, keywords.get(t, ()), patterns.get(t, ())) for t in dict.fromkeys([*keywords, *patterns])]


class ForbiddenPhrases:
    """Phrases the text must not contain (case-insensitive, any whitespace between words)."""

    def __init__(self, phrases: Iterable[str], rule: str = "forbidden_phrase"):
        self.rule = rule
        self.phrases = [as_text(p) for p in phrases]
        self._rx = _compile(self.phrases, (), rule)

    def check(self, text) -> Verdict:
        t = as_text(text)
        return _verdict(self.rule, t, _find(self._rx, t), "forbidden phrase used")


class MaxChars:
    """At most `limit` characters (of the decoded text); the span is everything past the cap."""

    def __init__(self, limit: int, rule: str = "max_chars"):
        if not isinstance(limit, int) or limit < 0:
            raise LabError(f"{rule}: limit must be an integer >= 0, got {limit!r}")
        self.limit, self.rule = limit, rule

    def check(self, text) -> Verdict:
        t = as_text(text)
        spans = [(self.limit, len(t))] if len(t) > self.limit else []
        return _verdict(self.rule, t, spans, f"{len(t)} characters > {self.limit}")


_PIECE = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text) -> int:
    """A tokenizer-free token estimate: each word costs ceil(len/4) tokens, each other symbol
    (punctuation, emoji) one. Hand-written: exact counts need the serving model's tokenizer
    (pass MaxTokens(count=...)); this errs high on long words, as a cap check should."""
    return sum(math.ceil(len(m.group()) / 4) for m in _PIECE.finditer(as_text(text)))


class MaxTokens:
    """At most `limit` tokens: approx_tokens by default, or `count(text) -> int` (a real
    tokenizer, e.g. lambda t: len(tok.encode(t))). The span starts where the cap is crossed."""

    def __init__(self, limit: int, count: Callable[[str], int] | None = None, rule: str = "max_tokens"):
        if not isinstance(limit, int) or limit < 0:
            raise LabError(f"{rule}: limit must be an integer >= 0, got {limit!r}")
        self.limit, self.count, self.rule = limit, count, rule

    def check(self, text) -> Verdict:
        t = as_text(text)
        if self.count is None:
            n, start = 0, None
            for m in _PIECE.finditer(t):
                n += math.ceil(len(m.group()) / 4)
                if start is None and n > self.limit:
                    start = m.start()
        else:
            n = int(self.count(t))
            start = self._crossing(t) if n > self.limit else None
        spans = [(start, len(t))] if start is not None else []
        return _verdict(self.rule, t, spans, f"~{n} tokens > {self.limit}")

    def _crossing(self, t: str) -> int:
        lo, hi = 0, len(t)  # the longest prefix within the cap, by bisection (log n tokenizer calls)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(self.count(t[:mid])) <= self.limit:
                lo = mid
            else:
                hi = mid - 1
        return lo


@dataclass
class RuleReport:
    passed: bool
    verdicts: list[Verdict]

    @property
    def violations(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]


class RuleSet:
    """Rules applied together; passed when every rule passed."""

    def __init__(self, rules: Iterable):
        self.rules = list(rules)

    def check(self, text) -> RuleReport:
        verdicts = [r.check(text) for r in self.rules]
        return RuleReport(all(v.passed for v in verdicts), verdicts)


# ------------------------------------------------------------------------------------ sentences

_ABBREV = {"e.g", "i.e", "vs", "et al", "al", "etc", "fig", "figs", "dr", "mr", "mrs", "ms", "approx",
           "ca", "cf", "resp", "incl", "eq", "ref", "refs", "st", "jr", "sr", "u.s", "e.u"}
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*\n")


def split_sentences(text) -> list[tuple[str, int, int]]:
    """(sentence, start, end) in order. A regex splitter, hand-written because nltk's punkt
    needs a data download this lab cannot make: it breaks after . ! ? followed by space, or at a
    blank line, but not after common abbreviations (e.g., vs., et al.). Decimals (p < 0.05) never break: there is no space after their dot."""
    t = as_text(text)
    out, start = [], 0
    for m in _BOUNDARY.finditer(t):
        head = t[start:m.start()]
        word = re.search(r"(\w+(?:\.\w+)*)$", head)
        w = word.group(1).lower() if word else ""
        if m.group().startswith(".") and w in _ABBREV:
            continue
        seg = t[start:m.end()]
        if seg.strip():
            s = start + len(seg) - len(seg.lstrip())
            out.append((t[s:m.end()].rstrip(), s, s + len(t[s:m.end()].rstrip())))
        start = m.end()
    seg = t[start:]
    if seg.strip():
        s = start + len(seg) - len(seg.lstrip())
        out.append((seg.strip(), s, s + len(seg.strip())))
    return out


# ------------------------------------------------------------------------------------ groundedness

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "the a an and or of to in on for with by at from as is are was were be been being this that these those "
    "it its we our they their there than then which who whom what when where how not no nor but if so such "
    "may might can could would should will shall do does did has have had also into over under between "
    "more most less least very all any each both other some only same study results patients".split())


def content_tokens(text) -> set[str]:
    """Lower-cased word tokens minus stop words (and one-character tokens)."""
    return {w for w in (x.lower() for x in _WORD.findall(as_text(text))) if len(w) > 1 and w not in _STOP}


def lexical_support(sentence, context_tokens: set[str]) -> float:
    """Fraction of the sentence's content tokens found in the context (containment, not Jaccard:
    a short sentence fully drawn from a long context should score 1). Hand-written rather than
    a rapidfuzz ratio: a ratio is symmetric and punishes the length gap to a long context."""
    toks = content_tokens(sentence)
    return len(toks & context_tokens) / len(toks) if toks else 1.0


@dataclass
class SentenceScore:
    sentence: str
    span: tuple[int, int]
    embedding: float | None  # max cosine to a context chunk; None with method="lexical"
    lexical: float
    score: float  # the one the threshold applies to
    supported: bool
    best_chunk: int | None  # index into the chunk list of the best-matching chunk


@dataclass
class GroundednessResult:
    grounded: bool
    fraction: float  # supported / scored sentences (1.0 when there is nothing to score)
    answer_score: float  # the k-th best sentence score, k = ceil(min_fraction * n): grounded iff >= threshold
    threshold: float
    method: str
    sentences: list[SentenceScore] = field(default_factory=list)
    truncated: bool = False  # the answer had more than max_sentences sentences; the rest count unsupported

    def table(self):
        import pandas as pd

        return pd.DataFrame([vars(s) for s in self.sentences])


# Chosen on half A of evaluate_groundedness(200, seed=0) (random negatives, sentence chunks,
# min_fraction=1): the answer's weakest sentence must reach it. Recalibrate for other data.
DEFAULT_THRESHOLDS = {"embedding": 0.33, "lexical": 0.12}
_EMBEDDER: list = [None]


class Groundedness:
    """Is every sentence of an answer (or a fraction of them) supported by the retrieved context?

    Each answer sentence is scored against context chunks (the passages split into sentences, or
    whole passages with chunking="passage"): `embedding` = max cosine similarity of
    all-MiniLM-L6-v2 embeddings, `lexical` = content-token containment in the whole context.
    method="auto" uses the embedding, and the lexical score when the embedder cannot be loaded.
    Sentences with no content word (emoji, "OK.") are not claims and are not scored."""

    def __init__(self, embedder=None, method: str = "auto", threshold: float | None = None,
                 min_fraction: float = 1.0, chunking: str = "sentence", max_sentences: int = 256,
                 threads: int = 1):
        if method not in ("auto", "embedding", "lexical"):
            raise LabError(f"groundedness method {method!r}: use auto, embedding or lexical")
        if chunking not in ("sentence", "passage"):
            raise LabError(f"groundedness chunking {chunking!r}: use sentence or passage")
        if not 0 < float(min_fraction) <= 1:
            raise LabError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
        self._embedder, self.chunking, self.min_fraction = embedder, chunking, float(min_fraction)
        self.max_sentences, self.threads = max_sentences, threads  # torch threads while encoding (0: as is)
        if method == "auto":
            method = "embedding" if self._load() is not None else "lexical"
        self.method = method
        self.threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
        self._cache: dict[str, object] = {}

    def _load(self):
        if self._embedder is None:
            if _EMBEDDER[0] is None:
                from llmarch_lab.assets import models

                try:
                    _EMBEDDER[0] = models.load_embedder()
                except (LabError, OSError, ImportError):
                    return None
            self._embedder = _EMBEDDER[0]
        return self._embedder

    def encode(self, texts: list[str]):
        """Unit-normalised embeddings, cached per text (an evaluation re-scores the same contexts)."""
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            emb = self._load()
            if emb is None:
                raise LabError("groundedness: the embedder (all-MiniLM-L6-v2) could not be loaded; use method='lexical'")
            from llmarch_lab.llm.local import torch_threads

            # One thread by default: on the shared 2-core machine two spin-waiting torch threads
            # encoded 149 sentences in 6.5-7.6 s, one thread in 3.7-5.4 s. One sentence is capped
            # at 2000 chars: the model reads 256 word pieces anyway.
            with torch_threads(self.threads):
                vecs = emb.encode([m[:2000] for m in missing], batch_size=64, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
            self._cache.update(zip(missing, vecs))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def chunks(self, contexts) -> list[str]:
        if isinstance(contexts, (str, bytes, bytearray, memoryview)) or not isinstance(contexts, Iterable):
            contexts = [contexts]
        passages = [as_text(c) for c in contexts]
        if self.chunking == "passage":
            return [p for p in passages if p.strip()]
        return [s for p in passages for s, _, _ in split_sentences(p)]

    def check(self, answer, contexts) -> GroundednessResult:
        """Score every sentence of `answer` against `contexts` (a list of passages, or one)."""
        sents = [s for s in split_sentences(answer) if content_tokens(s[0])]
        truncated = len(sents) > self.max_sentences
        scored = sents[: self.max_sentences]
        chunks = self.chunks(contexts)
        ctx_tokens = content_tokens(" ".join(chunks))
        lex = [lexical_support(s, ctx_tokens) for s, _, _ in scored]
        if self.method == "embedding" and scored and chunks:
            sim = self.encode([s for s, _, _ in scored]) @ self.encode(chunks).T
            best = sim.argmax(axis=1)
            emb = [float(sim[i, b]) for i, b in enumerate(best)]
            best = [int(b) for b in best]
        else:
            emb = [None if self.method == "lexical" else 0.0] * len(scored)
            best = [None] * len(scored)
        scores = lex if self.method == "lexical" else emb
        out = [SentenceScore(s, (a, b), e, lx, sc, sc >= self.threshold, bc)
               for (s, a, b), e, lx, sc, bc in zip(scored, emb, lex, scores, best)]
        all_scores = list(scores) + [0.0] * (len(sents) - len(scored))
        if not all_scores:
            return GroundednessResult(True, 1.0, 1.0, self.threshold, self.method, [], False)
        k = math.ceil(self.min_fraction * len(all_scores))
        answer_score = sorted(all_scores, reverse=True)[k - 1]
        fraction = sum(x >= self.threshold for x in all_scores) / len(all_scores)
        return GroundednessResult(answer_score >= self.threshold, fraction, answer_score, self.threshold,
                                  self.method, out, truncated)


# ------------------------------------------------------------------------------------ measurement

def auc(pos, neg) -> float:
    """ROC AUC = P(score_pos > score_neg) + 0.5 P(tie), via the Mann-Whitney U statistic."""
    from scipy.stats import mannwhitneyu

    if not len(pos) or not len(neg):
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))


def best_threshold(pos, neg) -> float:
    """The threshold (midpoint between adjacent scores) with the best accuracy on pos + neg."""
    import numpy as np

    s = np.unique(np.concatenate([pos, neg]))
    cands = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]]) if len(s) else np.array([0.5])
    pos, neg = np.asarray(pos), np.asarray(neg)
    acc = [((pos >= c).sum() + (neg < c).sum()) / (len(pos) + len(neg)) for c in cands]
    return float(cands[int(np.argmax(acc))])


def groundedness_pairs(n_items: int = 200, seed: int = 0, df=None, encode=None):
    """PubMedQA pairs: for each sampled item i, (LONG_ANSWER_i, CONTEXTS_i) is grounded, and
    (LONG_ANSWER_j, CONTEXTS_i) is not, with j a different random item of the sample
    (`other_answer`) and, when `encode` (texts -> unit vectors) is given, also the item whose
    QUESTION is most similar to i's (`near_answer`, a harder negative: same field, often the
    same vocabulary). `half` ("A" / "B") splits the items for threshold choice vs report."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.assets import datasets

    df = datasets.pubmedqa() if df is None else df
    if n_items < 4:
        raise LabError(f"groundedness evaluation needs n_items >= 4, got {n_items}")
    rng = np.random.default_rng(seed)
    pick = df.iloc[rng.permutation(len(df))[: min(n_items, len(df))]].reset_index(drop=True)
    n = len(pick)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never the item itself
    out = pd.DataFrame({"id": pick["id"], "question": pick["question"], "contexts": pick["contexts"],
                        "answer": pick["long_answer"], "other_answer": pick["long_answer"].iloc[other].values,
                        "half": np.where(np.arange(n) < n // 2, "A", "B")})
    if encode is not None:
        q = encode([as_text(x) for x in pick["question"]])
        sim = q @ q.T
        np.fill_diagonal(sim, -np.inf)
        out["near_answer"] = pick["long_answer"].iloc[sim.argmax(axis=1)].values
    return out


def evaluate_groundedness(n_items: int = 200, seed: int = 0, methods=("embedding", "lexical"),
                          negatives=("random", "nearest"), min_fraction: float = 1.0,
                          chunking: str = "sentence", embedder=None, df=None):
    """AUC and accuracy of the check on real pairs (groundedness_pairs). Per method and kind of
    negative, the threshold is the accuracy-best one on half A's items, and accuracy / TPR /
    TNR are reported on half B's (AUC on B and on both halves). One row per (method, negatives)."""
    import numpy as np
    import pandas as pd

    gs = {m: Groundedness(embedder=embedder, method=m, threshold=0.0, min_fraction=min_fraction,
                          chunking=chunking) for m in methods}
    enc = gs["embedding"].encode if "embedding" in gs else None
    pairs = groundedness_pairs(n_items, seed, df, encode=enc if "nearest" in negatives else None)
    if enc is not None:  # one batched encode of every text, then cached look-ups
        answers = pd.concat([pairs[c] for c in ("answer", "other_answer", "near_answer") if c in pairs])
        texts = [s for a in answers for s, _, _ in split_sentences(a)]
        texts += [c for ctx in pairs["contexts"] for c in gs["embedding"].chunks(ctx)]
        enc(list(dict.fromkeys(texts)))
    a, b = (pairs["half"] == "A").values, (pairs["half"] == "B").values
    rows = []
    for method, g in gs.items():
        pos = np.array([g.check(x, c).answer_score for x, c in zip(pairs["answer"], pairs["contexts"])])
        for kind in negatives:
            col = {"random": "other_answer", "nearest": "near_answer"}.get(kind)
            if col is None or col not in pairs:
                raise LabError(f"negatives {kind!r}: use random or nearest (nearest needs the embedding method)")
            neg = np.array([g.check(x, c).answer_score for x, c in zip(pairs[col], pairs["contexts"])])
            t = best_threshold(pos[a], neg[a])
            rows.append({"method": method, "negatives": kind, "chunking": chunking, "min_fraction": min_fraction,
                         "n_pairs_B": int(2 * b.sum()), "threshold_A": round(t, 4),
                         "accuracy_A": float(((pos[a] >= t).sum() + (neg[a] < t).sum()) / (2 * a.sum())),
                         "accuracy_B": float(((pos[b] >= t).sum() + (neg[b] < t).sum()) / (2 * b.sum())),
                         "tpr_B": float((pos[b] >= t).mean()), "tnr_B": float((neg[b] < t).mean()),
                         "auc_B": auc(pos[b], neg[b]), "auc_all": auc(pos, neg),
                         "pos_median": float(np.median(pos)), "neg_median": float(np.median(neg))})
    return pd.DataFrame(rows)


def groundedness_metrics(table) -> dict[str, float]:
    """Suggested metric names for evaluate_groundedness's table: `quality.groundedness_{method}_
    {negatives}_accuracy` fits schema.py's `quality.{w}_accuracy`; `..._auc` needs a spec there."""
    m = {}
    for r in table.to_dict("records"):
        w = f"groundedness_{r['method']}_{r['negatives']}"
        m[f"quality.{w}_auc"] = float(r["auc_B"])
        m[f"quality.{w}_accuracy"] = float(r["accuracy_B"])
    return m
