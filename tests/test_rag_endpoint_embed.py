"""The endpoint embedder (issue 32, part 3): MiniLM's GGUF served by a real llama-server on
/v1/embeddings gives sentence-transformers' vectors, through the lab's cache, for the corpus."""

from __future__ import annotations

import numpy as np
import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import gguf_convert
from llmarch_lab.labs.rag.corpus import files, vectors
from llmarch_lab.llm.embeddings import Embedder


def test_served_minilm_matches_sentence_transformers(tmp_path, monkeypatch):
    gguf = gguf_convert.minilm_gguf()  # make model-minilm-gguf (a make test prerequisite)
    monkeypatch.setattr(gguf_convert, "minilm_gguf", lambda: gguf)
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))  # a fresh cache: every vector comes from the server
    c = files.load("slice")
    sub = files.Corpus(c.passages.head(40).reset_index(drop=True), c.queries.head(0),
                       {"content_sha256": {files.FILES[0]: "e" * 64}}, c.where)
    served = vectors.build(sub, vectors.ENDPOINT)
    ref = Embedder("minilm-l6", cache=False).embed(vectors.texts(sub), progress=False)
    cos = (served * ref).sum(1)
    assert served.shape == (40, 384) and cos.min() > 0.9999, cos.min()
    with vectors.embedder(vectors.ENDPOINT) as emb:  # a second pass reads the cache: no new request
        again = emb.embed(vectors.texts(sub), progress=False)
        assert emb.hits == 40 and emb.misses == 0 and np.array_equal(again, served)
        with pytest.raises(LabError, match="query is empty"):
            emb.embed_query(" ")


def test_missing_gguf_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(LabError, match="make model-minilm-gguf"):
        gguf_convert.minilm_gguf()
