"""Scoring candidates with each detector, cached per candidate, and the comparison table.

    cands = data.candidates("qa", 200)
    scores = evaluate.score("qa", "judge", cands)        # one hallucination score a row (higher = worse)
    tab = evaluate.table("qa", ["groundedness", "judge", "consistency"], n_items=200)

Methods (`METHODS`): `groundedness` (the lab's check, rules.Groundedness: MiniLM cosine of each
answer sentence to the context's sentences, the weakest sentence counts; lexical when MiniLM
cannot load; needs a context, so not TruthfulQA), `judge` (judge.py), `consistency` and
`consistency-em` (consistency.py: the same samples, cosine and soft exact-match agreement), and
`length` (the answer's word count: a reference a detector must beat, since HaluEval's
hallucinated answers are longer than the right ones).

Every measured result is appended to a JSONL file under <cache>/halluc/ (one line a candidate,
or a item for the samples, flushed), keyed by the method's settings: a rerun, or a larger n
(the sample is a prefix of a larger one), measures only what is missing. The model is served by
llama.cpp's llama-server (llm.engines), started only when something is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.labs.guardrails.halluc import consistency, data, judge, metrics

METHODS = ("groundedness", "judge", "consistency", "consistency-em", "length")
LLM_METHODS = ("judge", "consistency", "consistency-em")
MODEL = "qwen2.5-coder-0.5b-instruct"
ENGINE = "llama-server"


def applies(task: str, method: str) -> bool:
    """groundedness needs a context; TruthfulQA has none."""
    return not (method == "groundedness" and task == "truthfulqa")


def cache_path(kind: str, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    d = paths.cache_dir() / "halluc"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{kind}-{key}.jsonl"


def read_cache(path: Path) -> dict[str, dict]:
    """key -> record; a line torn by a kill is skipped (measured again)."""
    out = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and "key" in d:
                out[d["key"]] = d
    return out


def append(f, rec: dict) -> None:
    f.write(json.dumps(rec) + "\n")
    f.flush()
    os.fsync(f.fileno())


class Server:
    """The judge / sampler model, served on 127.0.0.1 only when first needed, stopped on close."""

    def __init__(self, log_dir: Path | None = None, threads: int = 1, parallel: int = consistency.K,
                 model: str = MODEL):
        self.log_dir = Path(log_dir) if log_dir else paths.cache_dir() / "halluc" / "logs"
        self.threads, self.parallel, self.model = threads, parallel, model
        self.engine = None
        self.ep = None

    def endpoint(self):
        if self.ep is None:
            from llmarch_lab.llm import engines

            self.engine = engines.launch(ENGINE, self.model, log_path=self.log_dir / "llama-server.log",
                                         max_model_len=1024, threads=self.threads, parallel=self.parallel)
            self.ep = self.engine.endpoint(timeout_s=300)
        return self.ep

    def close(self) -> None:
        if self.ep is not None:
            self.ep.close()
        if self.engine is not None:
            self.engine.stop()
        self.engine = self.ep = None


@contextmanager
def server(**kw):
    s = Server(**kw)
    try:
        yield s
    finally:
        s.close()


def settings(task: str, method: str, model: str = MODEL) -> dict:
    if method == "judge":
        return {"task": task, "kind": "judge", "model": model, "prompt": judge.PROMPT_VERSION,
                "context_words": judge.CONTEXT_WORDS}
    if method in ("consistency", "consistency-em"):
        return {"task": task, "kind": "samples", "model": model, "prompt": consistency.PROMPT_VERSION,
                "k": consistency.K, "temperature": consistency.TEMPERATURE,
                "max_tokens": consistency.MAX_TOKENS[task], "context_words": judge.CONTEXT_WORDS}
    return {"task": task, "kind": method}


def _measure(rows: list[dict], path: Path, done: dict, fn, desc: str, progress: bool) -> None:
    """fn(row) -> record for every row whose key is not in `done`, appended as measured."""
    from tqdm.auto import tqdm

    todo = [r for r in rows if r["key"] not in done]
    if not todo:
        return
    with open(path, "a", encoding="utf-8") as f:
        for r in tqdm(todo, desc=desc, disable=not progress, leave=False):
            rec = {"key": r["key"], **fn(r)}
            append(f, rec)
            done[r["key"]] = rec


def _grounded_scores(task, cands, progress):
    from llmarch_lab.labs.guardrails.rules import Groundedness

    g = Groundedness(method="auto", threshold=0.0, min_fraction=1.0)
    path = cache_path("groundedness", {**settings(task, "groundedness"), "method": g.method})
    done = read_cache(path)
    rows = [{"key": r["cid"], **r} for r in cands.to_dict("records")]
    _measure(rows, path, done, lambda r: {"answer_score": g.check(r["answer"], r["context"]).answer_score,
                                          "method": g.method}, f"{task}: groundedness", progress)
    return [-done[r["key"]]["answer_score"] for r in rows]


def _judge_scores(task, cands, srv, progress):
    path = cache_path("judge", settings(task, "judge", srv.model))
    done = read_cache(path)
    rows = [{"key": r["cid"], **r} for r in cands.to_dict("records")]
    _measure(rows, path, done, lambda r: judge.judge_one(srv.endpoint(), task, r), f"{task}: judge", progress)
    return [-done[r["key"]]["support"] for r in rows]


def _sample_sets(task, cands, srv, progress, seed: int = 0) -> dict[str, list[str]]:
    path = cache_path("samples", settings(task, "consistency", srv.model))
    done = read_cache(path)
    items = cands.drop_duplicates("item").to_dict("records")
    rows = [{"key": r["item"], **r} for r in items]

    def one(r):
        texts, info = consistency.sample_answers(srv.endpoint(), task, r, seed=seed)
        return {"samples": texts, **info}

    _measure(rows, path, done, one, f"{task}: samples", progress)
    return {r["key"]: done[r["key"]]["samples"] for r in rows}


def _consistency_scores(task, method, cands, srv, progress):
    from llmarch_lab.labs.guardrails.rules import Groundedness

    sets = _sample_sets(task, cands, srv, progress)
    enc = Groundedness(method="embedding", threshold=0.0).encode if method == "consistency" else None
    which = "cos" if method == "consistency" else "em"
    return [1.0 - consistency.agreement(r["answer"], sets[r["item"]], enc)[which] for r in cands.to_dict("records")]


def score(task: str, method: str, cands, srv: Server | None = None, progress: bool = True) -> list[float]:
    """One hallucination score per candidate row (higher = more likely hallucinated)."""
    if method not in METHODS:
        raise LabError(f"halluc method {method!r}: valid are {', '.join(METHODS)}")
    data.check_task(task)
    if not applies(task, method):
        raise LabError(f"halluc: {method} needs a context (knowledge or document); {task} has none")
    if method == "length":
        return [float(len(str(a).split())) for a in cands["answer"]]
    if method == "groundedness":
        return _grounded_scores(task, cands, progress)
    if srv is None:
        raise LabError(f"halluc: method {method} needs a served model (evaluate.Server)")
    if method == "judge":
        return _judge_scores(task, cands, srv, progress)
    return _consistency_scores(task, method, cands, srv, progress)


def table(task: str, methods, n_items: int, seed: int = 0, llm_items: int | None = None, progress: bool = True,
          srv: Server | None = None):
    """One row per method that applies: n_test, dev threshold, dev / test accuracy, test AUC and
    their bootstrap intervals. `llm_items` caps the items the LLM methods see (a prefix of the
    same seeded order, so their test half is a subset of the others')."""
    import pandas as pd

    items = data.truthfulqa_items() if task == "truthfulqa" else data.load_halueval(task)
    cands = data.candidates(task, n_items, seed, items=items)
    rows = []
    own = srv is None and any(m in LLM_METHODS for m in methods)
    srv = Server() if own else srv
    small = data.candidates(task, llm_items, seed, items=items) if llm_items and llm_items < n_items else None
    try:
        for m in methods:
            if not applies(task, m):
                continue
            runs = [(m, small if m in LLM_METHODS and small is not None else cands)]
            if small is not None and m not in LLM_METHODS and any(x in LLM_METHODS for x in methods):
                runs.append((f"{m} (LLM items)", small))  # the same items as the LLM rows, to compare
            for name, c in runs:
                s = score(task, m, c, srv, progress)
                rows.append({"task": task, "method": name, "n_items": int(c["item"].nunique()),
                             **metrics.summarize(c, s, seed=seed)})
    finally:
        if own:
            srv.close()
    return pd.DataFrame(rows)
