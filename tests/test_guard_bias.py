"""Bias study (labs/guardrails/bias): the metrics on hand-made inputs with known values, the loaders'
one-line errors on malformed rows, the real data files, and (slow) SmolLM2 scoring CrowS-Pairs."""

import hashlib
import math

import numpy as np
import pytest

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.bias import data, metrics


def test_bbq_metrics_known_values():
    # options: 0 = unknown, 1 = the biased answer, 2 = the other group
    unknown, biased = [0] * 8, [1] * 8
    ambiguous = [True] * 4 + [False] * 4
    answer = [0, 0, 0, 0, 1, 2, 1, 2]
    pred = [0, 1, 1, 2, 1, 1, 0, 1]
    m = metrics.bbq(pred, answer, unknown, biased, ambiguous)
    assert m["acc_ambig"] == pytest.approx(25.0)
    # ambiguous: 3 non-unknown answers, 2 biased -> s = 2*2/3 - 1 = 1/3; s_AMB = (1 - 0.25) / 3
    assert m["bias_ambig"] == pytest.approx(25.0)
    assert m["acc_disambig"] == pytest.approx(25.0)
    # disambiguated: 3 non-unknown answers, all biased -> s_DIS = 1
    assert m["bias_disambig"] == pytest.approx(100.0)
    # aligned (answer = biased): 1 of 2 right; conflicting: 0 of 2
    assert m["acc_gap_disambig"] == pytest.approx(50.0)


def test_bbq_bias_ambig_is_zero_when_every_ambiguous_answer_is_unknown():
    m = metrics.bbq([0, 0, 2], [0, 0, 2], [0, 0, 0], [1, 1, 1], [True, True, False])
    assert m["acc_ambig"] == 100.0 and m["bias_ambig"] == 0.0
    assert m["bias_disambig"] == pytest.approx(-100.0)  # the one non-unknown answer is the non-biased one


def test_crows_and_stereoset_known_values():
    assert metrics.crows([-1, -5, -3, -2], [-2, -4, -3, -1])["stereo_pref"] == pytest.approx(25.0)  # a tie is not a preference
    s = metrics.stereoset(pro=[-1, -2, -1], anti=[-2, -1, -3], unrelated=[-3, -3, -0.5], target=["A", "A", "B"])
    # A: SS 50, LMS 100; B: SS 100, LMS 0 -> macro SS 75, LMS 50, ICAT 50 * 25 / 50
    assert (s["ss"], s["lms"], s["icat"]) == pytest.approx((75.0, 50.0, 25.0))


def test_bootstrap_intervals_bracket_the_value_and_repeat_with_the_seed():
    more = np.array([-1.0, -5, -3, -2, -4, -1, -6, -2])
    less = np.array([-2.0, -4, -3, -1, -5, -2, -5, -3])
    stat = lambda idx: metrics.crows(more[idx], less[idx])  # noqa: E731
    a = metrics.with_intervals(stat, len(more), n_boot=300, seed=7)["stereo_pref"]
    b = metrics.with_intervals(stat, len(more), n_boot=300, seed=7)["stereo_pref"]
    assert a == b and a[0] == pytest.approx(50.0) and a[1] <= a[0] <= a[2] and a[1] < a[2]
    const = metrics.with_intervals(lambda idx: {"x": 3.0}, 5, n_boot=50)["x"]
    assert const == (3.0, 3.0, 3.0)
    d = metrics.paired_delta(stat, stat, len(more), n_boot=50)["stereo_pref"]
    assert d == (0.0, 0.0, 0.0)


GOOD_BBQ = {"passage": "Two friends talked.", "question": "Who lied?\nPlease choose the correct option ",
            "options": "A. The nurse\nB. Unknown\nC. The pilot", "answer": ["Unknown"]}


@pytest.mark.parametrize("change, field", [
    ({"passage": ""}, "passage"),
    ({"options": "A. The nurse\nB. Unknown"}, "options"),
    ({"answer": ["The cook"]}, "answer"),
    ({"answer": "Unknown"}, "answer"),
    ({"options": "A. Not known\nB. Unknown\nC. The pilot"}, "options"),
])
def test_bbq_row_errors_name_the_field(change, field):
    item = data.parse_bbq_row("bbq.jsonl", 7, GOOD_BBQ)
    assert item.ambiguous and item.options[item.unknown] == "Unknown" and item.question == "Who lied?"
    with pytest.raises(LabError, match=rf"bbq.jsonl:7: .*{field}"):
        data.parse_bbq_row("bbq.jsonl", 7, {**GOOD_BBQ, **change})
    with pytest.raises(LabError, match="biased answer 'Unknown'"):
        data.parse_bbq_row("bbq.jsonl", 7, GOOD_BBQ, biased_text="Unknown")


def test_crows_and_stereoset_rows_reject_malformed_fields():
    with pytest.raises(LabError, match=r"c.csv:3: field 'sentence' must hold exactly one \[MASK\]"):
        data.parse_crows_row("c.csv", 3, {"bias_type": "age", "sentence": "No mask.", "mask1": "a", "mask2": "b"})
    ok = data.parse_crows_row("c.csv", 3, {"bias_type": "age", "sentence": "[MASK] people.", "mask1": "Old", "mask2": "Young"})
    assert (ok.more, ok.less) == ("Old people.", "Young people.")
    row = {"type": "intrasentence", "target": "t", "bias_type": "race", "context": "The t is BLANK.",
           "stereotype": "s", "anti-stereotype": "a", "unrelated": "u"}
    with pytest.raises(LabError, match="s.jsonl:9: field 'type'"):
        data.parse_stereoset_row("s.jsonl", 9, {**row, "type": "other"})
    with pytest.raises(LabError, match="s.jsonl:9: field 'anti-stereotype'"):
        data.parse_stereoset_row("s.jsonl", 9, {**row, "anti-stereotype": None})


def _write_data(root, files: dict[str, str]) -> None:
    sums = []
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        sums.append(f"{hashlib.sha256(text.encode()).hexdigest()}  {rel}")
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def test_loaders_reject_a_malformed_file_row(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("LLMARCH_DATA_DIR", str(tmp_path))
    good = json.dumps(GOOD_BBQ)
    _write_data(tmp_path, {data.BBQ_FILE: good + "\n{not json\n",
                           data.BBQ_BIASED_FILE: "line,question,biased_answer\n1,Who lied?,The pilot\n"})
    with pytest.raises(LabError, match=r"bbq.jsonl:2: not valid JSON"):
        data.bbq()
    _write_data(tmp_path, {data.BBQ_FILE: good + "\n",
                           data.BBQ_BIASED_FILE: "line,question,biased_answer\n1,Who lied?,The cook\n"})
    with pytest.raises(LabError, match=r"biased answer 'The cook' is not a non-unknown option"):
        data.bbq()
    _write_data(tmp_path, {data.BBQ_FILE: good + "\n",
                           data.BBQ_BIASED_FILE: "line,question,biased_answer\nfirst,Who lied?,The pilot\n"})
    with pytest.raises(LabError, match=r"bbq_biased_answers.csv:2: field 'line' must be an integer"):
        data.bbq()
    _write_data(tmp_path, {data.BBQ_FILE: good + "\n",
                           data.BBQ_BIASED_FILE: "line,question,biased_answer\n1,Who lied?,The pilot\n"})
    [item] = data.bbq()
    assert item.biased == 2 and item.answer == 1


def test_the_real_files_load():
    items = data.bbq()
    assert len(items) == 320 and len(data.bbq(annotated_only=False)) == 1012
    assert all(it.biased not in (None, it.unknown) for it in items)
    assert 100 < sum(it.ambiguous for it in items) < 220
    assert len(data.crows_pairs()) == 1018
    st = data.stereoset()
    assert len(st) == 4229 and sum(it.kind == "intrasentence" for it in st) == 2106
    dev, test = data.split_half(items, 0)
    assert len(dev) == len(test) == 160 and not {i.line for i in dev} & {i.line for i in test}


@pytest.mark.slow
def test_smollm2_scores_five_crows_pairs():
    import torch

    from llmarch_lab.labs.guardrails.bias import run_bias
    from llmarch_lab.labs.guardrails.bias.scoring import Scorer, doc_start_id
    from llmarch_lab.llm.local import torch_threads

    sc = Scorer.load("smollm2-135m-instruct")
    with torch_threads(1):  # one thread: on a shared 2-core machine, 2 threads wait on each other (4x slower)
        _check_five_crows_pairs(sc, run_bias, doc_start_id, torch)


def _check_five_crows_pairs(sc, run_bias, doc_start_id, torch):
    rep = run_bias("smollm2", n_items=5, seed=0, sets=("crows",), mitigate=False, n_boot=200, progress=False,
                   use_cache=False, scorer=sc)
    [row] = rep.rows
    assert row["n"] == 5 and row["lo"] <= row["value"] <= row["hi"] and row["value"] in (0, 20, 40, 60, 80, 100)
    df = rep.items["crows"]
    assert len(df) == 5 and (df.ll_more < 0).all() and (df.ll_less < 0).all() and (df.ll_more != df.ll_less).all()
    # the batched, left-padded score of a sentence equals one unpadded forward pass
    pair = next(p for p in data.crows_pairs() if p.line == df.line.iloc[0])
    ids = [doc_start_id(sc.tok)] + sc.encode(pair.more)
    with torch.inference_mode():
        logp = torch.log_softmax(sc.model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    direct = float(logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
    assert math.isclose(direct, df.ll_more.iloc[0], abs_tol=1e-3)
    # the shared-prompt option scorer gives the same numbers as scoring each continuation on its own
    prompt, opts = sc.chat_prompt("Who lied?\nA. Unknown\nB. The pilot"), [sc.encode("Unknown"), sc.encode("The pilot")]
    for (a, n), (b, m) in zip(sc.options(prompt, opts), sc.continuations([(prompt, o) for o in opts])):
        assert n == m and math.isclose(a, b, abs_tol=1e-3)
