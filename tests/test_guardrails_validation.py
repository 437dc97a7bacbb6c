"""Structured-output validation and business rules (labs/guardrails/validation/, rules.py) on
real parts: llama.cpp's server with SmolLM2-135M (from .engines/llamacpp), real PubMedQA items,
the embedded all-MiniLM-L6-v2. Each check is a property that a broken part fails."""

import json

import numpy as np
import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import datasets
from llmarch_lab.labs.guardrails import rules
from llmarch_lab.labs.guardrails import validation as v

BAD = ["", "   \n\t ", "🙂🔥🧪" * 30, "word. " * 20000, b"caf\xe9 \xff\xfe r\xc3\xa9sum\xc3\xa9", None, 12345]


@pytest.fixture(scope="module")
def pq():
    return datasets.pubmedqa()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """llama.cpp serving SmolLM2-135M for this module, warmed up once."""
    from llmarch_lab.assets import models
    from llmarch_lab.llm import engines

    try:
        engines.engine_python("llamacpp")
    except LabError as e:
        pytest.skip(f"no llama.cpp engine environment: {e}")
    log = tmp_path_factory.mktemp("engine") / "llamacpp.log"
    with engines.launch("llamacpp", models.SMOLLM2, log_path=log, threads=1) as eng:  # see validation.main
        ep = eng.endpoint(timeout_s=180)
        ep.chat(v.build_messages("Is this a warm-up?", "Yes."), 4)
        yield ep
        ep.close()


@pytest.fixture(scope="module")
def items(pq):
    return v.sample_items(3, seed=1, df=pq).to_dict("records")  # one per decision


# ------------------------------------------------------------------------------- schema, parsing

def test_schema_is_the_pydantic_contract():
    s = v.json_schema()
    assert s["required"] == ["decision", "reason"] and s["additionalProperties"] is False
    assert s["properties"]["decision"]["enum"] == list(v.DECISIONS)
    assert s["properties"]["reason"]["maxLength"] == v.REASON_MAX_CHARS
    ok = v.validate('{"decision": "maybe", "reason": "Mixed results."}')
    assert ok.valid and ok.schema_valid and ok.value.decision == "maybe" and ok.error == ""


@pytest.mark.parametrize("text", [
    '```json\n{"decision": "yes", "reason": "It worked."}\n```',
    '```\n{"decision": "yes", "reason": "It worked."}\n```',
    'Sure! Here it is:\n```JSON {"decision": "yes", "reason": "It worked."}```\nHope it helps.',
    'The answer is:\n{"decision": "yes", "reason": "It worked."} and more text',
    '```json\n{"decision": "yes", "reason": "It worked."}',  # unclosed fence: cut off by max_tokens
])
def test_plain_parse_handles_fenced_and_embedded_json(text):
    c = v.validate(text)
    assert c.valid and c.value.decision == "yes" and c.value.reason == "It worked.", c.error


@pytest.mark.parametrize("text, fragment", [
    ('{"decision": "Yes", "reason": "x"}', "decision"),
    ('{"decision": "yes", "reason": ""}', "reason"),
    ('{"decision": "yes", "reason": "   "}', "blank"),
    ('{"decision": "yes", "reason": "' + "x" * (v.REASON_MAX_CHARS + 1) + '"}', f"yours has {v.REASON_MAX_CHARS + 1}"),
    ('{"decision": "yes", "reason": "ok", "extra": 1}', "extra"),
    ('{"decision": "yes"}', "reason"),
    ('["yes", "ok"]', "JSON object"),
    ('{"decision": "yes", "reason": "ok"', "not JSON"),
    ("No.", "not JSON"),
    ("", "empty"),
])
def test_invalid_replies_are_named(text, fragment):
    c = v.validate(text)
    assert not c.valid and c.value is None and fragment.lower() in c.error.lower(), c.error


def test_pydantic_and_jsonschema_agree_except_on_blank_reasons():
    for text in ['{"decision": "no", "reason": "r"}', '{"decision": "no"}', '{"decision": "x", "reason": "r"}',
                 '{"decision": "no", "reason": "r", "k": 0}', '{"decision": "no", "reason": "' + "y" * 200 + '"}']:
        c = v.validate(text)
        assert c.valid == c.schema_valid, text
    blank = v.validate('{"decision": "no", "reason": "  "}')
    assert blank.schema_valid and not blank.valid  # the one rule JSON Schema cannot say here
    assert blank.decision == "no" and v.validate('{"decision": "No", "reason": "r"}').decision is None


def test_bad_inputs_do_not_crash_parsing_or_prompts():
    for x in BAD:
        c = v.validate(x)
        assert not c.valid and isinstance(c.error, str)
        msgs = v.build_messages(x, x)
        assert len(msgs[-1]["content"]) < v.MAX_CONCLUSION_CHARS + 1100
    assert "\ufffd" in v.as_text(b"\xff") and v.strip_fences(b"```json\n{}\n```") == "{}"


def test_constraint_bodies():
    assert v.constraint_body("llamacpp_schema") == {"response_format": {"type": "json_object", "schema": v.json_schema()}}
    assert v.constraint_body("llamacpp_gbnf")["grammar"].startswith("root ::=")
    rf = v.constraint_body("vllm_json_schema")["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == v.json_schema()
    assert v.constraint_body("vllm_structured_outputs") == {"structured_outputs": {"json": v.json_schema()}}
    with pytest.raises(LabError, match="use one of"):
        v.constraint_body("guided_json")


def test_sample_is_stratified_seeded_and_not_the_first_rows(pq):
    s = v.sample_items(50, seed=0, df=pq)
    assert len(s) == 50 and s["id"].is_unique
    share = pq["decision"].value_counts(normalize=True)
    got = s["decision"].value_counts()
    assert all(abs(got[d] - 50 * share[d]) <= 1 for d in share.index), got
    assert s["id"].tolist() == v.sample_items(50, seed=0, df=pq)["id"].tolist()
    assert s["id"].tolist() != v.sample_items(50, seed=1, df=pq)["id"].tolist()
    assert set(s["id"]) != set(pq["id"].iloc[:50])
    assert set(v.sample_items(3, seed=0, df=pq)["decision"]) == {"yes", "no", "maybe"}


# ------------------------------------------------------------------------------- the real engine

@pytest.mark.slow
@pytest.mark.parametrize("constraint", ["llamacpp_schema", "llamacpp_gbnf"])
def test_constrained_decoding_is_always_schema_valid(endpoint, items, constraint):
    for it in items:
        o = v.run_constrained(endpoint, it, constraint=constraint)
        assert o.error == "" and o.valid and o.schema_valid, (constraint, o.text, o.error)
        assert o.decision in v.DECISIONS and 0 < len(o.reason) <= v.REASON_MAX_CHARS
        assert o.calls == 1 and o.completion_tokens and o.latency_ms > 0


@pytest.mark.slow
def test_reask_never_exceeds_its_retry_bound(endpoint, items):
    # 3 tokens cannot hold the JSON: every reply is invalid, so the bound is reached exactly
    for retries in (0, 2):
        o = v.run_reask(endpoint, items[0], max_retries=retries, max_tokens=3)
        assert not o.valid and o.calls == retries + 1 and o.retries == retries, o
        assert o.completion_tokens <= 3 * (retries + 1)
    with pytest.raises(LabError, match="max_retries"):
        v.run_reask(endpoint, items[0], max_retries=-1)


@pytest.mark.slow
def test_evaluate_strategies_table(endpoint, items):
    summary, per = v.evaluate_strategies(endpoint, items[:2], max_retries=1, progress=False)
    assert summary["strategy"].tolist() == list(v.STRATEGIES) and len(per) == 6
    assert (per.groupby("strategy")["item_id"].nunique() == 2).all()
    assert per["calls"].max() <= 2 and (per[per.strategy != "reask"]["calls"] == 1).all()
    row = summary.set_index("strategy")
    assert row.loc["constrained", "valid_rate"] == 1.0 and row.loc["plain", "extra_latency_ms"] == 0
    assert row.loc["reask", "valid_rate"] >= row.loc["plain", "valid_rate"]  # same first reply, then more tries
    assert (per["correct"] <= per["valid"]).all()
    for col in ("field_accuracy", "latency_ms_p50", "latency_ms_p95", "extra_tokens", "retries_mean"):
        assert np.isfinite(row[col]).all(), col
    metrics = v.mlflow_metrics(summary)
    assert metrics["quality.constrained_valid_rate"] == 1.0 and "latency.validation_reask_ms_p95" in metrics
    from llmarch_lab import schema

    assert schema.spec("quality.reask_field_accuracy") and schema.spec("latency.validation_reask_ms_p95")


@pytest.mark.slow
def test_bad_inputs_through_the_engine(endpoint):
    for x in ["", "word " * 20000, b"\xff\xfe r\xc3\xa9sum\xc3\xa9 \xf0\x9f\x99\x82"]:  # 100k chars: capped
        o = v.run_constrained(endpoint, {"id": "bad", "question": x, "long_answer": x, "decision": "yes"})
        assert o.error == "" and o.valid, o


# ------------------------------------------------------------------------------- rules

def _guard():
    return rules.RuleSet([*rules.banned_topics({"weapons": ["bomb", "assault rifle"], "gambling": ["casino"]},
                                             patterns={"self_harm": [r"\bkill\s+(?:my|your)self\b"]}),
                        rules.ForbiddenPhrases(["as an AI language model", "I cannot help"]),
                        rules.MaxChars(120), rules.MaxTokens(20)])


def test_rules_flag_topics_phrases_and_length_with_names_and_spans():
    text = "As an  AI\nlanguage model I note: the ASSAULT RIFLE and a bomb. Casinos are fine."
    rep = _guard().check(text)
    by = {x.rule: x for x in rep.verdicts}
    assert not rep.passed
    w = by["banned_topic:weapons"]
    assert not w.passed and text[w.span[0]:w.span[1]] == "ASSAULT RIFLE" and len(w.spans) == 2
    assert by["banned_topic:gambling"].passed  # "Casinos" is not the whole word "casino"
    assert by["banned_topic:self_harm"].passed and by["max_chars"].passed
    f = by["forbidden_phrase"]
    assert not f.passed and f.span[0] == 0 and f.excerpt == "As an  AI\nlanguage model"
    t = by["max_tokens"]
    assert not t.passed and t.span[1] == len(text) and rules.approx_tokens(text[:t.span[0]]) <= 20
    assert {x.rule for x in rep.violations} == {"banned_topic:weapons", "forbidden_phrase", "max_tokens"}
    sh = rules.banned_topics(patterns={"self_harm": [r"\bkill\s+(?:my|your)self\b"]})[0].check("I want to kill  myself")
    assert sh.rule == "banned_topic:self_harm" and sh.excerpt == "kill  myself"
    long = rules.MaxChars(10).check("x" * 25)
    assert long.span == (10, 25) and long.rule == "max_chars"
    exact = rules.MaxTokens(3, count=lambda s: len(s.split())).check("one two three four five")
    assert exact.excerpt == "four five" and not exact.passed
    assert _guard().check("A calm, short answer about casinos.").passed


def test_rule_construction_errors():
    with pytest.raises(LabError, match="bad regex"):
        rules.BannedTopic("x", patterns=["(unclosed"])
    with pytest.raises(LabError, match="at least one"):
        rules.BannedTopic("x")
    with pytest.raises(LabError, match="limit"):
        rules.MaxChars(-1)


def test_bad_inputs_do_not_crash_rules():
    g = _guard()
    for x in BAD:
        rep = g.check(x)
        assert isinstance(rep.passed, bool) and len(rep.verdicts) == len(g.rules)
        rules.split_sentences(x)
        rules.approx_tokens(x)
    big = g.check("bomb " * 20000)
    w = next(x for x in big.verdicts if x.rule == "banned_topic:weapons")
    assert not w.passed and len(w.spans) == rules.MAX_SPANS
    assert rules.ForbiddenPhrases(["r\u00e9sum\u00e9"]).check(b"my r\xc3\xa9sum\xc3\xa9 \xff").span == (3, 9)


def test_sentence_splitter_keeps_abbreviations_and_decimals():
    text = "Risk fell (p < 0.05) vs. controls, e.g. in adults. Smith et al. agree! Is it?\n\nNew para"
    got = [s for s, _, _ in rules.split_sentences(text)]
    assert got == ["Risk fell (p < 0.05) vs. controls, e.g. in adults.", "Smith et al. agree!", "Is it?", "New para"]
    for s, a, b in rules.split_sentences(text):
        assert text[a:b] == s


# ------------------------------------------------------------------------------- groundedness

@pytest.fixture(scope="module")
def ground():
    return rules.Groundedness()


def test_groundedness_separates_own_context_from_another_items(ground, pq):
    # 12 real items: each LONG_ANSWER against its own CONTEXTS and against another item's answer.
    # Bars are looser than the 200-item measurement (AUC ~0.95-0.98): conclusions carry
    # implication sentences ("This finding opens the opportunity...") that no context states.
    pairs = rules.groundedness_pairs(12, seed=3, df=pq)
    lex = rules.Groundedness(method="lexical")
    for g, wins in ((ground, 10), (lex, 8)):
        pos = [g.check(a, c).answer_score for a, c in zip(pairs["answer"], pairs["contexts"])]
        neg = [g.check(a, c).answer_score for a, c in zip(pairs["other_answer"], pairs["contexts"])]
        assert rules.auc(pos, neg) >= 0.8 and sum(p > n for p, n in zip(pos, neg)) >= wins, (g.method, pos, neg)
        own = sum(g.check(a, c).grounded for a, c in zip(pairs["answer"], pairs["contexts"]))
        other = sum(g.check(a, c).grounded for a, c in zip(pairs["other_answer"], pairs["contexts"]))
        assert own >= 7 and other <= 3, (g.method, own, other)
    res = ground.check(pairs["answer"][0], pairs["contexts"][0])
    tab = res.table()
    assert ground.method == "embedding" and len(tab) == len(res.sentences) >= 1
    assert {"sentence", "span", "embedding", "lexical", "score", "supported", "best_chunk"} <= set(tab.columns)
    assert all(-1.0001 <= s.embedding <= 1.0001 for s in res.sentences)


def test_groundedness_fraction_and_a_mixed_answer(ground, pq):
    it, other = pq.iloc[10], pq.iloc[900]
    mixed = it["long_answer"] + " " + other["long_answer"]
    strict = ground.check(mixed, it["contexts"])
    half = rules.Groundedness(embedder=ground._embedder, threshold=ground.threshold, min_fraction=0.3)
    assert not strict.grounded and 0 < strict.fraction < 1
    assert half.check(mixed, it["contexts"]).grounded
    assert [s.supported for s in strict.sentences][:1] == [True] and not strict.sentences[-1].supported


def test_bad_inputs_do_not_crash_groundedness(ground):
    for x in BAD:
        for ctx in (["A passage about aspirin and fever."], x, [], [x, None]):
            r = ground.check(x, ctx)
            assert isinstance(r.grounded, bool) and 0 <= r.fraction <= 1
    assert ground.check("", ["ctx"]).grounded  # nothing claimed, nothing to ground
    assert not ground.check("Aspirin cures fever in every patient.", []).grounded
    cap = rules.Groundedness(embedder=ground._embedder, max_sentences=5).check("Claim one here. " * 40, ["Claim one here."])
    assert cap.truncated and len(cap.sentences) == 5 and not cap.grounded


def test_threshold_choice_and_auc_helpers():
    assert rules.auc([0.9, 0.8], [0.1, 0.2]) == 1.0 and rules.auc([0.1], [0.9]) == 0.0
    assert rules.auc([0.5], [0.5]) == 0.5
    t = rules.best_threshold(np.array([0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.6]))
    assert 0.6 < t <= 0.7


def test_main_prints_nothing_broken_in_json_examples():
    # The prompt's one worked example must itself be a valid Extraction.
    assert v.validate(v.SHOT[1]["content"]).valid
    assert json.loads(v.SHOT[1]["content"])["decision"] in v.DECISIONS
