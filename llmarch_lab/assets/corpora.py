"""The two retrieval benchmarks, as (documents, queries, graded qrels, reference answers).

    from llmarch_lab.labs.rag import corpora
    c = corpora.load("cranfield", fields="title+text")
    c.docs       DataFrame(doc_id, text)
    c.queries    DataFrame(qid, text)
    c.qrels      {qid: {doc_id: relevance}}  (graded for Cranfield: grade 1 -> 4 ... grade 4 -> 1)
    c.references {qid: {"answer": str, "contexts": [passages]}}  (PubMedQA only)

Cranfield: 1400 aeronautics abstracts, 225 queries, graded judgments (datasets.cranfield()).
PubMedQA as retrieval: corpus = the 1000 labeled abstracts (their context passages joined with
blank lines, so a splitter can cut at passage breaks), query = the question, relevant = the
question's own abstract, reference answer = its long answer, reference contexts = its passages.
Subsets (n_docs, n_queries) are random with the seed, never the first N (PubMedQA files are
ordered by label).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from llmarch_lab import LabError
from llmarch_lab.assets import datasets

CORPORA = ("cranfield", "pubmedqa")
FIELDS = ("title+text", "text")


@dataclass
class Corpus:
    name: str
    docs: object
    queries: object
    qrels: dict
    references: dict = field(default_factory=dict)


def _cranfield(fields: str) -> Corpus:
    import pandas as pd

    c = datasets.cranfield()
    if fields == "title+text":
        text = [f"{t}. {w}" if t else w for t, w in zip(c.docs.title, c.docs.text)]
    else:
        text = c.docs.text.tolist()
    docs = pd.DataFrame({"doc_id": c.docs.doc_id.astype(str), "text": text})
    queries = pd.DataFrame({"qid": c.queries.qid.astype(str), "text": c.queries.text})
    return Corpus("cranfield", docs, queries, c.graded_qrels())


def _pubmedqa() -> Corpus:
    import pandas as pd

    pq = datasets.pubmedqa()
    ids = pq.id.astype(str)
    docs = pd.DataFrame({"doc_id": ids, "text": ["\n\n".join(c) for c in pq.contexts]})
    queries = pd.DataFrame({"qid": ids, "text": pq.question})
    qrels = {i: {i: 1} for i in ids}
    refs = {i: {"answer": a, "contexts": list(c)} for i, a, c in zip(ids, pq.long_answer, pq.contexts)}
    return Corpus("pubmedqa", docs, queries, qrels, refs)


def load(name: str, fields: str = "title+text", n_docs: int = 0, n_queries: int = 0, seed: int = 0) -> Corpus:
    """A corpus, optionally subsampled: n_docs random documents (0 = all), then n_queries random
    queries (0 = all) among those that keep at least one relevant document in the subset."""
    if name not in CORPORA:
        raise LabError(f"corpus {name!r}: valid are {', '.join(CORPORA)}")
    if fields not in FIELDS:
        raise LabError(f"fields {fields!r}: valid are {', '.join(FIELDS)}")
    c = _cranfield(fields) if name == "cranfield" else _pubmedqa()
    rng = random.Random(seed)
    if n_docs and n_docs < len(c.docs):
        keep = sorted(rng.sample(range(len(c.docs)), n_docs))
        c.docs = c.docs.iloc[keep].reset_index(drop=True)
    doc_set = set(c.docs.doc_id)
    qrels = {q: {d: r for d, r in rels.items() if d in doc_set and r > 0} for q, rels in c.qrels.items()}
    c.qrels = {q: rels for q, rels in qrels.items() if rels}
    c.queries = c.queries[c.queries.qid.isin(c.qrels.keys())].reset_index(drop=True)
    if c.queries.empty:
        raise LabError(f"corpus {name!r} with n_docs={n_docs}: no query keeps a relevant document; raise n_docs")
    if n_queries and n_queries < len(c.queries):
        keep = sorted(rng.sample(range(len(c.queries)), n_queries))
        c.queries = c.queries.iloc[keep].reset_index(drop=True)
    c.qrels = {q: c.qrels[q] for q in c.queries.qid}
    return c
