"""Typed loaders for the real datasets in data/, each file checked against data/SHA256SUMS.

    from llmarch_lab import datasets
    text = datasets.wikitext2_test()            # str, the raw WikiText-2 test split
    pq = datasets.pubmedqa()                    # DataFrame, one row per labeled question
    cran = datasets.cranfield()                 # docs, queries, graded qrels

Every file a loader reads is verified by sha256 first (a missing or altered file is a one-line
LabError naming it) and recorded, so the run's MLflow tags carry the hashes of the data it used.
Sources, licenses and citations: data/README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError, paths

MANIFEST = "SHA256SUMS"
_verified: dict[str, str] = {}  # relative path -> sha256, for the run's data tags
_hash_cache: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: hash each file once per process


def manifest() -> dict[str, str]:
    path = paths.data_dir() / MANIFEST
    if not path.is_file():
        raise LabError(f"{path}: data manifest missing")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise LabError(f"{path}:{n}: expected '<sha256>  <relative path>'")
        out[parts[1]] = parts[0]
    return out


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def verify(rel: str) -> Path:
    """Path of a data file after checking its sha256 against the manifest."""
    expected = manifest().get(rel)
    path = paths.data_dir() / rel
    if expected is None:
        raise LabError(f"{path}: not listed in {paths.data_dir() / MANIFEST}")
    if not path.is_file():
        raise LabError(f"{path}: data file missing (restore it with `git checkout -- data/{rel}`)")
    got = sha256_file(path)
    if got != expected:
        raise LabError(f"{path}: sha256 mismatch, the file is corrupt or altered "
                       f"(expected {expected[:12]}..., got {got[:12]}...)")
    _verified[rel] = got
    return path


def verified_files() -> dict[str, str]:
    return dict(_verified)


# ------------------------------------------------------------------------------------ loaders

def wikitext2_test() -> str:
    """The raw WikiText-2 test split (Merity et al. 2016), as used for perplexity."""
    return verify("wikitext2/wiki.test.raw").read_text(encoding="utf-8")


def pubmedqa():
    """PubMedQA labeled set: 1000 rows, `is_test` marks the official 500 test ids.

    Columns: id, question, contexts (list of passages), labels (their section names),
    long_answer, decision (yes/no/maybe), is_test. test_ground_truth.json is ordered by label,
    so draw any quick subset at random or stratified, never the first N.
    """
    import pandas as pd

    items = json.loads(verify("pubmedqa/ori_pqal.json").read_text())
    test = json.loads(verify("pubmedqa/test_ground_truth.json").read_text())
    rows = [{"id": pid, "question": it["QUESTION"], "contexts": it["CONTEXTS"],
             "labels": it.get("LABELS", []), "long_answer": it.get("LONG_ANSWER", ""),
             "decision": it["final_decision"], "is_test": pid in test} for pid, it in items.items()]
    df = pd.DataFrame(rows)
    missing = set(test) - set(df["id"])
    if missing:
        raise LabError(f"pubmedqa/test_ground_truth.json: {len(missing)} test ids not in ori_pqal.json")
    return df


@dataclass
class Cranfield:
    """The Cranfield collection: docs (id, title, text), queries (qid 1..225, text), qrels.

    qrels rows are (qid, doc_id, grade) with the collection's grades: 1 = complete answer ...
    4 = minimal interest, -1 = of no interest. `graded_qrels()` maps them for nDCG so that grade
    1 counts most (relevance 4) and -1 is dropped.
    """

    docs: "object"
    queries: "object"
    qrels: "object"

    def graded_qrels(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for qid, doc, grade in self.qrels.itertuples(index=False):
            if 1 <= grade <= 4:
                out.setdefault(str(qid), {})[str(doc)] = 5 - grade
        return out


def _cran_records(text: str) -> list[dict[str, str]]:
    # Hand-written on purpose: ir_datasets parses this format but fetches the collection from the
    # web at first use, which this lab must never do; the .I/.T/.A/.B/.W format is 15 lines to read.
    records, cur, field = [], None, None
    for line in text.splitlines():
        m = re.match(r"^\.([ITABW])(?:\s+(\d+))?\s*$", line)
        if m and m.group(1) == "I":
            cur = {"I": m.group(2)}
            records.append(cur)
            field = None
        elif m:
            field = m.group(1)
            cur[field] = ""
        elif cur is not None and field:
            cur[field] += line.strip() + " "
    return [{k: v.strip() for k, v in r.items()} for r in records]


def cranfield() -> Cranfield:
    import pandas as pd

    docs = _cran_records(verify("cranfield/cran.all.1400").read_text())
    queries = _cran_records(verify("cranfield/cran.qry").read_text())
    qrel_rows = []
    for n, line in enumerate(verify("cranfield/cranqrel").read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) == 3:
            qrel_rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
        elif parts:
            raise LabError(f"data/cranfield/cranqrel:{n}: expected 'query doc grade'")
    docs_df = pd.DataFrame({"doc_id": [int(d["I"]) for d in docs],
                            "title": [d.get("T", "") for d in docs],
                            "text": [d.get("W", "") for d in docs]})
    # cran.qry's .I numbers skip values; the judgments number queries 1..225 by position.
    q_df = pd.DataFrame({"qid": range(1, len(queries) + 1),
                         "orig_id": [int(q["I"]) for q in queries],
                         "text": [q.get("W", "") for q in queries]})
    qrels = pd.DataFrame(qrel_rows, columns=["qid", "doc_id", "grade"])
    return Cranfield(docs=docs_df, queries=q_df, qrels=qrels)


def prompt_injections():
    """deepset/prompt-injections train split: columns text, label (1 = injection)."""
    import pandas as pd

    return pd.read_parquet(verify("prompt_injections/train.parquet"))


def pii_synth() -> list[dict]:
    """Presidio synthetic PII records: full_text plus entity spans of 17 types."""
    return json.loads(verify("pii/synth_dataset_v2.json").read_text())


# ------------------------------------------------------------------------- routing and caching

ROUTELLM_BENCHMARKS = ("gsm8k", "mmlu", "mt_bench")


def gsm8k_test():
    """GSM8K test questions (Cobbe et al. 2021, MIT): columns qid, question, answer (the number
    after '####', as text), solution (the worked answer)."""
    import pandas as pd

    rows = []
    path = verify("routing/gsm8k/test.jsonl")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        answer = d["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
        rows.append({"qid": f"gsm8k-{n}", "question": d["question"], "answer": answer, "solution": d["answer"]})
    return pd.DataFrame(rows)


def _contaminated(bench: str) -> set[str]:
    path = verify(f"routing/{bench}/contaminated_prompts.jsonl")
    return {json.loads(x)["eval_prompt"].strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()}


def routellm_outcomes(bench: str, drop_contaminated: bool = True):
    """RouteLLM's precomputed outcomes (Ong et al. 2024, Apache-2.0) of a strong and a weak model:
    columns qid, prompt, subject, strong, weak (quality in [0, 1]: correctness for GSM8K/MMLU, the
    GPT-4 judge's 1-10 score / 10 for MT-Bench, averaged over both turns). The prompts the authors
    flagged as overlapping their router training data are dropped unless drop_contaminated=False.
    Strong = gpt-4-1106-preview, weak = Mixtral-8x7B-Instruct-v0.1."""
    import pandas as pd

    if bench not in ROUTELLM_BENCHMARKS:
        raise LabError(f"routellm benchmark {bench!r}: valid are {', '.join(ROUTELLM_BENCHMARKS)}")
    strong, weak = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
    if bench == "mt_bench":
        qs = {}
        for line in verify("routing/mt_bench/question.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                qs[d["question_id"]] = d
        scores: dict[tuple, list[float]] = {}
        for line in verify("routing/mt_bench/judgements.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            model = {strong: "strong", weak.split("/")[-1]: "weak", weak: "weak"}.get(d["model"])
            if model is None or d.get("score", -1) < 0:
                continue
            scores.setdefault((d["question_id"], model), []).append(float(d["score"]) / 10.0)
        rows = [{"qid": f"mt_bench-{q}", "prompt": qs[q]["turns"][0], "subject": qs[q].get("category", ""),
                 "strong": sum(scores[(q, "strong")]) / len(scores[(q, "strong")]),
                 "weak": sum(scores[(q, "weak")]) / len(scores[(q, "weak")])}
                for q in sorted(qs) if (q, "strong") in scores and (q, "weak") in scores]
        df = pd.DataFrame(rows)
    else:
        files = (["routing/gsm8k/gsm8k_responses.csv"] if bench == "gsm8k" else
                 sorted(f"routing/mmlu/{p.name}" for p in (paths.data_dir() / "routing" / "mmlu").glob("mmlu_*.csv")))
        parts = []
        for rel in files:
            d = pd.read_csv(verify(rel))
            subject = Path(rel).stem.removeprefix("mmlu_") if bench == "mmlu" else "gsm8k"
            parts.append(pd.DataFrame({"prompt": d["prompt"], "subject": subject,
                                       "strong": d[strong].astype(float), "weak": d[weak].astype(float)}))
        df = pd.concat(parts, ignore_index=True)
        df.insert(0, "qid", [f"{bench}-{i}" for i in range(len(df))])
    if drop_contaminated:
        bad = _contaminated(bench)
        df = df[~df["prompt"].str.strip().isin(bad)].reset_index(drop=True)
    return df


def qqp_pairs(rel: str = "qqp/pairs_dev.jsonl.gz"):
    """Quora question pairs (GPTCache's benchmark set, dev split): columns text_a, text_b, label."""
    import gzip

    import pandas as pd

    path = verify(rel)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return pd.DataFrame([json.loads(x) for x in f if x.strip()])


def paraphrases():
    """GPTCache's 999 mock paraphrase pairs: columns origin, similar."""
    import pandas as pd

    return pd.DataFrame(json.loads(verify("qqp/paraphrase_mock_999.json").read_text(encoding="utf-8")))
