"""The corpus on disk: gzip'd JSON lines written reproducibly, their content hashes, and the loader.

    from llmarch_lab.labs.rag.corpus import files
    c = files.load("slice")      # the committed slice (data/rag_corpus/), sha256-checked
    c = files.load("full")       # the built corpus (make rag-corpus), content hashes checked
    c.passages                   # DataFrame: pid, source, title, text
    c.queries                    # DataFrame: qid, task, split, text, relevant (list of pids)

A file's content hash is the sha256 of its uncompressed bytes (gzip's own bytes may differ across
zlib versions; the rows may not). Each folder holds passages.jsonl.gz, queries.jsonl.gz and
manifest.json (counts, chunking, input and content hashes).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, paths

FILES = ("passages.jsonl.gz", "queries.jsonl.gz")
SLICE_DIR = "rag_corpus"  # under data/: the committed slice and the full build's expected manifest
FULL_MANIFEST = "full_manifest.json"


@dataclass
class Corpus:
    passages: object  # DataFrame
    queries: object  # DataFrame
    manifest: dict
    where: Path

    def judged(self, task: str, split: str | None = None):
        q = self.queries[self.queries.task == task]
        return q if split is None else q[q.split == split]


def full_dir() -> Path:
    return paths.cache_dir() / "rag_corpus" / "full"


def slice_dir() -> Path:
    return paths.data_dir() / SLICE_DIR


def write_jsonl_gz(path: Path, rows) -> str:
    """Rows as JSON lines, gzip'd with a fixed mtime and no file name; returns the content sha256."""
    h = hashlib.sha256()
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as f:
        for r in rows:
            line = (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
            h.update(line)
            f.write(line)
    return h.hexdigest()


def content_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_jsonl_gz(path: Path):
    import pandas as pd

    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return pd.DataFrame([json.loads(x) for x in f if x.strip()])
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise LabError(f"{path}: unreadable ({err}); build it again") from None


def load(which: str = "slice", check: bool = True) -> Corpus:
    """The slice (committed, verified against data/SHA256SUMS) or the full build (content hashes
    against its manifest)."""
    if which == "slice":
        from llmarch_lab.assets import datasets

        where = slice_dir()
        for name in (*FILES, "manifest.json"):
            datasets.verify(f"{SLICE_DIR}/{name}")
    elif which == "full":
        where = full_dir()
    else:
        raise LabError(f"corpus {which!r}: valid are slice, full")
    mpath = where / "manifest.json"
    if not mpath.is_file():
        raise LabError(f"{mpath}: missing (build the corpus: `make rag-corpus`)")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if check and which == "full":
        for name in FILES:
            got = content_sha256(where / name)
            if got != manifest["content_sha256"][name]:
                raise LabError(f"{where / name}: content sha256 {got[:12]}… is not the manifest's; build it again")
    return Corpus(read_jsonl_gz(where / FILES[0]), read_jsonl_gz(where / FILES[1]), manifest, where)


def subset(corpus: Corpus, queries, passages: int, seed: int = 0) -> Corpus:
    """A smaller corpus for studies too slow at 500k (an embedder's relevance): every passage judged
    relevant to `queries`, then a seeded random draw of the others up to `passages` in all, in
    corpus order. Its scores are higher than the full corpus's (fewer distractors); compare rows
    measured on the same subset only."""
    import numpy as np

    if passages < 1:
        raise LabError(f"subset of {passages} passages: at least 1")
    p = corpus.passages
    judged = p.pid.isin({pid for rel in queries.relevant for pid in rel}).to_numpy()
    others = np.flatnonzero(~judged)
    take = np.random.default_rng(seed).choice(others, max(0, min(len(others), passages - int(judged.sum()))), replace=False)
    keep = judged.copy()
    keep[take] = True
    sub = p[keep].reset_index(drop=True)
    parent = corpus.manifest["content_sha256"][FILES[0]]
    sha = hashlib.sha256((parent + "|" + "\n".join(sub.pid.astype(str))).encode()).hexdigest()  # own vectors folder
    return Corpus(sub, queries.reset_index(drop=True),
                  {**corpus.manifest, "content_sha256": {**corpus.manifest["content_sha256"], FILES[0]: sha},
                   "subset_of": len(p), "subset_seed": seed}, corpus.where)
