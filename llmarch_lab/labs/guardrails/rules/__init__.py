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

One module a job (each importing only those before it): text.py (as_text, split_sentences,
content_tokens), validators.py (Verdict, the rules, RuleSet), groundedness.py (Groundedness),
evaluate.py (auc, groundedness_pairs, evaluate_groundedness). This package re-exports their
public names.
"""

from llmarch_lab.labs.guardrails.rules.evaluate import (
    auc,
    best_threshold,
    evaluate_groundedness,
    groundedness_metrics,
    groundedness_pairs,
)
from llmarch_lab.labs.guardrails.rules.groundedness import (
    DEFAULT_THRESHOLDS,
    Groundedness,
    GroundednessResult,
    SentenceScore,
    lexical_support,
)
from llmarch_lab.labs.guardrails.rules.text import as_text, content_tokens, split_sentences
from llmarch_lab.labs.guardrails.rules.validators import (
    MAX_SPANS,
    BannedTopic,
    ForbiddenPhrases,
    MaxChars,
    MaxTokens,
    RuleReport,
    RuleSet,
    Verdict,
    approx_tokens,
    banned_topics,
)

__all__ = [
    "auc", "best_threshold", "evaluate_groundedness", "groundedness_metrics", "groundedness_pairs",
    "DEFAULT_THRESHOLDS", "Groundedness", "GroundednessResult", "SentenceScore", "lexical_support",
    "as_text", "content_tokens", "split_sentences",
    "MAX_SPANS", "BannedTopic", "ForbiddenPhrases", "MaxChars", "MaxTokens", "RuleReport", "RuleSet", "Verdict",
    "approx_tokens", "banned_topics",
]
