"""Redaction with Presidio's anonymizer (replace, mask, hash, reversible encrypt) over every occurrence of every detected value."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.pii.config import DEFAULT, OPERATORS, PiiConfig
from llmarch_lab.labs.guardrails.pii.detect import as_text, detect
from llmarch_lab.labs.guardrails.pii.leak import merge_spans, occurrences

# ------------------------------------------------------------------------------------ redaction

@dataclass
class Redaction:
    """An anonymized text and the operator results (positions in the new text) decrypt needs."""

    text: str
    items: list[dict] = field(default_factory=list)


def _operator(operator: str, key: str | bytes | None):
    from presidio_anonymizer.entities import OperatorConfig

    if operator == "replace":  # Presidio's default new_value is "<ENTITY_TYPE>"
        return OperatorConfig("replace")
    if operator == "mask":
        return OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 10**9, "from_end": False})
    if operator == "hash":
        return OperatorConfig("hash", {"hash_type": "sha256"})
    if operator == "encrypt":
        if not key:
            raise LabError("redact(operator='encrypt') needs key= (an AES key of 16, 24 or 32 bytes)")
        return OperatorConfig("encrypt", {"key": key})
    raise LabError(f"redact operator {operator!r}: valid are {', '.join(OPERATORS)}")


def redaction_spans(text: str, spans: list[dict]) -> list[dict]:
    """What redaction covers: the detected spans plus every other occurrence of a detected value
    (any whitespace between its words, capitalized case variants: leak.occurrences), overlapping or
    touching spans merged into one, and same-type spans with only spaces between them ("John" "Smith")."""
    return merge_spans(occurrences(text, spans), text)


def anonymize(text: str | bytes, config: PiiConfig = DEFAULT, operator: str = "replace",
              key: str | bytes | None = None, spans: list[dict] | None = None) -> Redaction:
    """detect() + presidio-anonymizer: every detected span, and every other occurrence of a detected
    value in the text (redaction_spans), replaced by the operator's output, so a value found once
    appears nowhere in the result. `spans`: detect()'s result for this text when the caller already
    has it (one analysis)."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import RecognizerResult as AnonResult

    op = _operator(operator, key)
    text = as_text(text)
    spans = detect(text, config) if spans is None else spans
    if not spans:
        return Redaction(text=text, items=[])
    results = [AnonResult(s["entity_type"], s["start"], s["end"], s["score"]) for s in redaction_spans(text, spans)]
    out = AnonymizerEngine().anonymize(text=text, analyzer_results=results, operators={"DEFAULT": op})
    items = [{"start": i.start, "end": i.end, "entity_type": i.entity_type, "text": i.text, "operator": i.operator}
             for i in out.items]
    return Redaction(text=out.text, items=items)


def redact(text: str | bytes, config: PiiConfig = DEFAULT, operator: str = "replace",
           key: str | bytes | None = None) -> str:
    """The text with every detected PII span replaced (<TYPE>), masked (*), hashed (sha256,
    salted per entity by Presidio) or encrypted (AES, reversible with decrypt)."""
    return anonymize(text, config, operator, key).text


def decrypt(redaction: Redaction, key: str | bytes) -> str:
    """Undo an operator="encrypt" anonymize() with Presidio's DeanonymizeEngine."""
    from presidio_anonymizer import DeanonymizeEngine
    from presidio_anonymizer.entities import OperatorConfig, OperatorResult

    items = [OperatorResult(start=i["start"], end=i["end"], entity_type=i["entity_type"], text=i["text"],
                            operator=i["operator"]) for i in redaction.items if i["operator"] == "encrypt"]
    if not items:
        return redaction.text
    return DeanonymizeEngine().deanonymize(text=redaction.text, entities=items,
                                           operators={"DEFAULT": OperatorConfig("decrypt", {"key": key})}).text
