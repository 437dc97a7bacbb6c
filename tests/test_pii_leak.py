"""No PII left behind: the redactor covers every occurrence of a detected value (any whitespace,
capitalized variants), merges overlapping spans, and the verbatim leak rate is measured.

Real Presidio anonymizer; the tests that detect load the real spaCy wheel once (pii caches it)."""

import json

import pytest

from llmarch_lab.assets import datasets
from llmarch_lab.labs.guardrails import pii
from llmarch_lab.labs.guardrails.pii import leak
from llmarch_lab.labs.guardrails.pii.redact import redaction_spans
from llmarch_lab.results import Result

KEY = "0123456789abcdef"


def _span(text, value, kind="PERSON", nth=0, score=0.9):
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return {"entity_type": kind, "start": start, "end": start + len(value), "score": score}


# ------------------------------------------------------------------------- patterns and merging

def test_value_pattern_takes_any_whitespace_and_keeps_word_boundaries():
    pat = leak.value_pattern(leak.normalize("Jane \n Roe"))
    assert pat.search("hi Jane Roe.") and pat.search("hi Jane\nRoe") and pat.search("Jane\t  Roe")
    assert not pat.search("Jane Roeder") and not pat.search("MaryJane Roe")
    assert leak.leaks("Apt 123 and Also", ["23", "Al", "Apt"]) == ["Apt"]
    assert leak.leaks("mail jane@x.org!", ["jane@x.org"]) == ["jane@x.org"]  # non-word edges: no boundary needed
    assert leak.value_pattern("  \n ") is None and leak.leaks("x", ["", " "]) == []


def test_merge_spans_joins_overlaps_touching_and_same_type_words():
    text = "John Smith met Acme Corp at 5 Main St"
    spans = [_span(text, "John"), _span(text, "Smith"),                 # same type, one space apart
             _span(text, "Acme Corp", "ORGANIZATION"), _span(text, "Corp at 5", "LOCATION", score=0.5),
             _span(text, "5 Main St", "LOCATION")]                      # overlap of three
    out = leak.merge_spans(spans, text)
    assert [(text[s["start"]:s["end"]], s["entity_type"]) for s in out] == [
        ("John Smith", "PERSON"), ("Acme Corp at 5 Main St", "ORGANIZATION")]
    two_lines = "John\nSmith"  # a line break keeps two same-type spans apart
    assert len(leak.merge_spans([_span(two_lines, "John"), _span(two_lines, "Smith")], two_lines)) == 2


# ------------------------------------------------------------------ redaction of every occurrence

def test_a_value_detected_once_is_redacted_everywhere():
    text = ("Alice: who are you?\nAlice:I'm Bob's daughter. ALICE wrote to Alicetown, "
            "and alice in lower case is a common word here.")
    out = pii.anonymize(text, pii.TUNED, spans=[_span(text, "Alice")]).text
    assert out.count("<PERSON>") == 3, out                      # both labels and the upper-case variant
    assert "Alicetown" in out and "alice in lower case" in out  # not inside a word, not a lowercase word
    assert not leak.leaks(out, ["Alice", "ALICE"])


def test_line_broken_and_spaced_values_are_redacted():
    text = "Ship to 12 Main St\nSpringfield. Again: 12 Main  St Springfield, and Jane Roe, Jane\nRoe, jane roe."
    spans = [_span(text, "12 Main St\nSpringfield", "LOCATION"), _span(text, "Jane Roe")]
    out = pii.anonymize(text, pii.TUNED, spans=spans).text
    assert out == "Ship to <LOCATION>. Again: <LOCATION>, and <PERSON>, <PERSON>, jane roe.", out
    email = "Write to Jane.Roe@Example.org or jane.roe@example.org"
    out = pii.anonymize(email, pii.TUNED, spans=[_span(email, "Jane.Roe@Example.org", "EMAIL_ADDRESS")]).text
    assert out == "Write to <EMAIL_ADDRESS> or <EMAIL_ADDRESS>"  # an e-mail address in any case


def test_overlapping_spans_leave_no_fragment_and_encrypt_round_trips():
    text = "Call Mary Ann Lee at home; Mary Ann Lee answers."
    spans = [_span(text, "Mary Ann"), _span(text, "Ann Lee", "LOCATION", score=0.4)]
    cover = redaction_spans(text, spans)
    assert [text[s["start"]:s["end"]] for s in cover] == ["Mary Ann Lee", "Mary Ann Lee"]
    for operator in pii.OPERATORS:
        red = pii.anonymize(text, pii.TUNED, operator=operator, key=KEY, spans=spans)
        assert not leak.leaks(red.text, ["Mary", "Ann", "Lee"]), (operator, red.text)
        if operator == "encrypt":
            assert pii.decrypt(red, KEY) == text


# ------------------------------------------------------------------------ with the real detector

def test_detector_fills_lists_speaker_labels_and_title_cues():
    cases = {
        "Nadia: Where were you?\nOskar: At home.\nNadia: Liar!": ["Nadia", "Oskar"],
        "We invited Zofia, Peter, Mary and Hleb to the party.": ["Zofia", "Peter", "Mary", "Hleb"],
        "I worked at Globex Corporation as Senior welding inspector, then moved on.": ["Senior welding inspector"],
    }
    for text, values in cases.items():
        out = pii.redact(text, pii.TUNED)
        assert not leak.leaks(out, values), (text, out)
    benign = "However, the weather was fine and the party went on."  # no name, nothing to fill
    assert pii.redact(benign, pii.TUNED) == benign


@pytest.fixture(scope="module")
def test_eval():
    _, test = pii.split(datasets.pii_synth())
    return test[:30], pii.evaluate(test[:30], pii.TUNED, progress=False)


def test_leak_rate_on_test_records_is_measured_and_only_shrinks(test_eval):
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig
    from presidio_anonymizer.entities import RecognizerResult as R

    records, ev = test_eval
    assert ev.gold_spans == sum(len(r["spans"]) for r in records) > 30
    assert ev.detected_leaks == 0
    preds = ev.predictions
    leaked = [json.loads(x) for x in preds["gold_leaked"]]
    assert sum(map(len, leaked)) == ev.gold_leaks and ev.gold_leak_rate == ev.gold_leaks / ev.gold_spans
    assert ev.gold_leak_rate <= 0.05, leaked
    # Presidio's anonymizer on the detected spans alone: every leak left now was a leak there too.
    plain = AnonymizerEngine()
    for r, spans, now, red in zip(records, preds["predicted"], leaked, preds["redacted"]):
        spans = json.loads(spans)
        before = plain.anonymize(text=r["full_text"], analyzer_results=[
            R(s["entity_type"], s["start"], s["end"], s["score"]) for s in spans],
            operators={"DEFAULT": OperatorConfig("replace")}).text if spans else r["full_text"]
        assert set(now) <= set(leak.leaks(before, [s["entity_value"] for s in r["spans"]]))
        assert not leak.leaks(red, [r["full_text"][s["start"]:s["end"]] for s in spans])


def test_leak_metrics_are_on_the_schema(test_eval):
    from llmarch_lab.labs.guardrails.parts import pii as part

    _, ev = test_eval
    m = ev.metrics()
    res = Result()
    for name in ("errors.pii_gold_leak_rate", "errors.pii_gold_leaks", "errors.pii_detected_leaks",
                 "count.pii_gold_spans"):
        res.add(name, m[name])
    assert set(part.REPORT[2].values()) <= set(m)
