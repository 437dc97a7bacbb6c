"""Hallucination detectors (llmarch_lab/labs/guardrails/halluc): the loaders on the real data/
samples and on malformed files, the metrics on tiny inputs with known answers, the cache, the
part's run, and the LLM judge against a real llama-server serving Qwen2.5-Coder-0.5B (slow;
skipped when `make engine-llama-server` / `make model-qwen-0.5b` have not been run)."""

import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest

from llmarch_lab import LabError, schema
from llmarch_lab.labs.guardrails.halluc import consistency, data, evaluate, judge, metrics


def _write(path, lines, gz=False):
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


QA_ROW = {"knowledge": "K.", "question": "Q?", "right_answer": "A", "hallucinated_answer": "B"}


@pytest.mark.parametrize("bad, needle", [
    ({k: v for k, v in QA_ROW.items() if k != "hallucinated_answer"}, "field 'hallucinated_answer' missing"),
    ({**QA_ROW, "right_answer": "  "}, "field 'right_answer' not a non-empty string"),
    ({**QA_ROW, "question": 7}, "field 'question' not a non-empty string"),
    ({**QA_ROW, "id": "x"}, "field 'id' must be an integer"),
    ('{"knowledge": "K", "question": ', "not JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_malformed_halueval_row_is_one_line_naming_file_line_and_field(tmp_path, bad, needle):
    path = _write(tmp_path / "qa.jsonl.gz", [QA_ROW, bad], gz=True)
    with pytest.raises(LabError) as e:
        data.parse_halueval(path, "qa")
    assert needle in str(e.value) and f"{path}:2" in str(e.value) and "\n" not in str(e.value)


def test_malformed_truthfulqa_row_and_empty_file(tmp_path):
    path = _write(tmp_path / "tq.jsonl", [{"question": "Q?", "answer": ["a", ""]}, {"question": "Q2?", "answer": [""]}])
    with pytest.raises(LabError, match=r"tq\.jsonl:2: field 'answer' must be a list of strings"):
        data.parse_truthfulqa(path)
    with pytest.raises(LabError, match="no rows"):
        data.parse_truthfulqa(_write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(LabError, match="unreadable"):
        data.parse_halueval(_write(tmp_path / "notgz.jsonl.gz", [QA_ROW]), "qa")  # .gz name, plain bytes


def test_real_samples_load_and_split_balanced_by_item():
    for task in data.HALUEVAL_TASKS:
        items = data.load_halueval(task)  # sha256-checked against data/SHA256SUMS
        assert len(items) == 1000 and items["id"].is_unique
    c = data.candidates("qa", 40, seed=0)
    assert len(c) == 80 and c["label"].sum() == 40 and c["cid"].is_unique
    assert c.groupby("half")["label"].mean().tolist() == [0.5, 0.5]  # balanced in each half
    assert c.groupby("item")["half"].nunique().max() == 1  # an item's two answers share a half
    small = data.candidates("qa", 20, seed=0)  # a smaller sample is a prefix, halves kept
    assert small.merge(c, on=["cid", "half"]).shape[0] == len(small)
    with pytest.raises(LabError, match="valid are"):
        data.candidates("nope", 10)
    with pytest.raises(LabError, match="has 1000"):
        data.candidates("qa", 1001)


def test_truthfulqa_negatives_are_other_questions_answers():
    tq = data.load_truthfulqa()
    assert len(tq) == 817
    rng = np.random.default_rng(0)
    items = data.truthfulqa_items(embed=lambda xs: (v := rng.normal(size=(len(xs), 8))) / np.linalg.norm(
        v, axis=1, keepdims=True))
    own = dict(zip(tq["id"], tq["answers"]))
    assert all(r.halluc not in own[r.id] and r.right == own[r.id][0] for r in items.itertuples())


def test_auc_threshold_accuracy_on_tiny_inputs():
    assert metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert metrics.auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # ties count half
    assert math.isnan(metrics.auc([0.2, 0.3], [1, 1]))
    t = metrics.best_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert 0.2 < t < 0.8 and metrics.accuracy([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], t) == 1.0
    assert metrics.accuracy([0.1, 0.9], [1, 0], t) == 0.0
    with pytest.raises(LabError):
        metrics.best_threshold([], [])


def test_summarize_uses_dev_threshold_and_item_bootstrap():
    c = pd.DataFrame({"item": [i // 2 for i in range(16)], "label": [0, 1] * 8,
                      "half": ["dev"] * 8 + ["test"] * 8})
    s = [0.0, 1.0] * 4 + [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # test: one item swapped
    m = metrics.summarize(c, s, n_resamples=200)
    assert 0 < m["threshold"] < 1 and m["dev_acc"] == 1.0
    assert m["acc"] == 0.75 and m["auc"] == 0.75 and m["n_test"] == 8
    assert m["acc_ci95_low"] <= m["acc"] <= m["acc_ci95_high"] and m["auc_ci95_high"] <= 1.0
    with pytest.raises(LabError, match="no score"):
        metrics.summarize(c, [float("nan")] * 16)


def test_judge_reads_yes_no_log_probs_and_prompts_by_task():
    y, n = judge.yes_no({"Yes": -0.2, " yes": -3.0, "No": -2.0, "Maybe": -5.0})
    assert y == pytest.approx(math.log(math.exp(-0.2) + math.exp(-3.0))) and n == -2.0
    assert judge.yes_no({"Sure": -0.1, "No": -0.5}) == (-1.5, -0.5)  # missing label: min - 1
    with pytest.raises(LabError):
        judge.yes_no({})
    msg = judge.messages("summarization", "word " * 900, "", "S.")[1]["content"]
    assert msg.startswith("Document:") and msg.count("word") == judge.CONTEXT_WORDS and "summary supported" in msg
    assert "Knowledge" not in judge.messages("truthfulqa", "", "Q?", "A.")[1]["content"]


def test_consistency_agreement_soft_exact_match():
    a = consistency.agreement("Delhi", ["It is in Delhi.", "Mumbai.", ""])
    assert a["em"] == pytest.approx(1 / 3) and math.isnan(a["cos"])
    enc = lambda xs: np.eye(len(xs), 4)[[0] + [0] * (len(xs) - 1)]  # noqa: E731 - every text the same vector
    assert consistency.agreement("x y", ["x", "y"], enc)["cos"] == 1.0


def test_length_scores_and_groundedness_cache_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    c = data.candidates("dialogue", 6, seed=0)
    assert evaluate.score("dialogue", "length", c) == [float(len(a.split())) for a in c["answer"]]
    with pytest.raises(LabError, match="needs a context"):
        evaluate.score("truthfulqa", "groundedness", c)
    with pytest.raises(LabError, match="needs a served model"):
        evaluate.score("dialogue", "judge", c)
    first = evaluate.score("dialogue", "groundedness", c.iloc[:4], progress=False)
    path = next((tmp_path / "halluc").glob("groundedness-*.jsonl"))
    assert len(path.read_text().splitlines()) == 4
    both = evaluate.score("dialogue", "groundedness", c, progress=False)  # only the 8 missing are measured
    assert len(path.read_text().splitlines()) == 12 and both[:4] == first


def test_part_runs_and_logs_halluc_metrics(tmp_path, monkeypatch):
    from llmarch_lab.labs.guardrails.parts.hallucination import HallucinationParams, run
    from llmarch_lab.results import Result

    if schema.spec("quality.halluc_acc_ci95_low") is None:  # until llmarch_lab/schema.py declares them
        schema.declare(schema.MetricSpec("quality.halluc_{w}", "higher", "", "hallucination detector (test)"))
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="needs a context"):
        HallucinationParams(halluc_task="truthfulqa", halluc_method="groundedness")
    res = Result()
    run(HallucinationParams(halluc_task="qa", halluc_items=20, halluc_method="length"), res)
    assert 0.5 < res.metrics["quality.halluc_acc"] <= 1 and 0.5 < res.metrics["quality.halluc_auc"] <= 1
    assert res.metrics["quality.halluc_acc_ci95_low"] <= res.metrics["quality.halluc_acc"]
    assert len(res.tables["halluc_scores"]) == 80


def _qwen_server_or_skip():
    from llmarch_lab.assets import gguf_parts
    from llmarch_lab.llm import engines

    try:
        engines.engine_python("llama-server")
    except LabError as e:
        pytest.skip(f"no llama-server binary: {e}")
    gguf = gguf_parts.target(evaluate.MODEL)
    if not gguf.is_file():
        pytest.skip(f"no {evaluate.MODEL} GGUF at {gguf}: run `make model-qwen-0.5b`")
    return gguf


@pytest.mark.slow
def test_judge_on_three_items_against_real_llama_server(tmp_path, monkeypatch):
    gguf = _qwen_server_or_skip()  # by path: the results cache below is a fresh folder, the model is not in it
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    c = data.candidates("qa", 4, seed=0).iloc[:3]
    with evaluate.server(log_dir=tmp_path, parallel=1, model=str(gguf)) as srv:
        s = evaluate.score("qa", "judge", c, srv, progress=False)
        assert srv.engine.alive()
        guard = judge.guard_scorer(srv.ep.base_url, srv.ep.model)  # the output-guard form: P(hallucinated)
        r = c.iloc[0]
        p = guard(r["answer"], {"messages": [{"role": "user", "content": f"{r['context']}\n{r['query']}"}]})
        assert 0.0 <= p <= 1.0
    assert len(s) == 3 and all(math.isfinite(x) for x in s)
    recs = [json.loads(x) for x in next((tmp_path / "halluc").glob("judge-*.jsonl")).read_text().splitlines()]
    assert [r["key"] for r in recs] == c["cid"].tolist()
    assert all(r["prompt_tokens"] > 20 and r["logp_yes"] <= 0 and r["logp_no"] <= 0 for r in recs)
    assert any(r["token"].strip().lower() in ("yes", "no") for r in recs)  # it answers the question asked
