"""Data loaders read the real files and verify sha256; bad files fail with one clear line."""

import shutil
from pathlib import Path

import pytest

from llmarch_lab import LabError, paths
from llmarch_lab.assets import datasets

DATA = Path(__file__).resolve().parent.parent / "data"


def test_wikitext2():
    text = datasets.wikitext2_test()
    assert len(text.splitlines()) == 4358 or len(text.split()) > 200_000
    assert "Robert Boulter" in text[:500]


def test_pubmedqa_official_test_split():
    df = datasets.pubmedqa()
    assert len(df) == 1000 and df.is_test.sum() == 500
    assert set(df.decision) == {"yes", "no", "maybe"}
    assert all(isinstance(c, list) and c for c in df.contexts)


def test_cranfield_docs_queries_graded_qrels():
    cran = datasets.cranfield()
    assert len(cran.docs) == 1400 and len(cran.queries) == 225
    assert cran.queries.qid.tolist() == list(range(1, 226))
    assert cran.docs.text.str.len().gt(0).sum() == 1398  # docs 471 and 995 are empty
    graded = cran.graded_qrels()
    assert set(v for q in graded.values() for v in q.values()) <= {1, 2, 3, 4}
    assert (cran.qrels.grade == -1).sum() > 0 and all(q in graded for q in ("1", "225"))


def test_prompt_injections_and_pii():
    pi = datasets.prompt_injections()
    assert len(pi) == 546 and pi.label.sum() == 203
    assert len(datasets.pii_synth()) == 1500


def test_loaded_files_are_recorded_for_run_tags():
    datasets.wikitext2_test()
    assert datasets.verified_files()["wikitext2/wiki.test.raw"].startswith("4f3e427e")


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    monkeypatch.setenv("LLMARCH_DATA_DIR", str(dst))
    assert paths.data_dir() == dst
    return dst


def test_corrupt_file_fails_sha256(data_copy):
    f = data_copy / "wikitext2" / "wiki.test.raw"
    f.write_text(f.read_text().replace("Robert", "Roberta", 1))
    with pytest.raises(LabError) as e:
        datasets.wikitext2_test()
    msg = str(e.value)
    assert "wiki.test.raw: sha256 mismatch" in msg and "\n" not in msg


def test_missing_file_is_named(data_copy):
    (data_copy / "cranfield" / "cranqrel").unlink()
    with pytest.raises(LabError, match=r"cranqrel: data file missing"):
        datasets.cranfield()
