"""Per-question outcomes of a small and a large model on PubMedQA and GSM8K, with exact scoring.

    from llmarch_lab.labs.cost import outcomes
    items = outcomes.sample("pubmedqa", n=400, seed=0)           # stratified by label
    df = outcomes.measure("qwen2.5-coder-1.5b-instruct", items, log_dir=run_dir)
    table = outcomes.paired(small_df, large_df)                   # one row per question: weak, strong, small_conf

Both models are served by llama.cpp (llm.engines) and asked through the one client (llm.endpoint):
- PubMedQA: the fine-tuning lab's prompt (tasks.pubmedqa_user_text), one generated token with the
  top-20 log-probs; a label's log-prob is the log-sum-exp over the top tokens that spell it
  ("Yes", "yes", " yes"), and the prediction is the best of yes/no/maybe. Confidence: the
  predicted label's probability renormalised over the three labels.
- GSM8K: a worked answer (up to `max_tokens`), scored by numeric match of the final number
  (tasks.gsm8k_extract). Confidence: the mean token log-prob of the answer.
Token counts come from the server's usage, so the cost model prices exactly what was spent.

Every outcome is appended to a JSONL file in the cache (one line per question, flushed), keyed by
model, task and question id, so a long measurement that is interrupted resumes where it stopped
and the lab's runs reuse measurements already made (a torn last line is ignored).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.assets import datasets, tasks

TASKS = ("pubmedqa", "gsm8k")
CONTEXT_WORDS = 300  # PubMedQA abstracts are cut to this many words (prefill time on 2 cores)


def sample(task: str, n: int, seed: int = 0):
    """`n` questions of a task (0 = all): PubMedQA stratified by label over the 1000 labeled
    items, GSM8K at random over the 1319 test questions; the first n of one seeded order, so a
    smaller sample is a subset of a larger one. Columns: qid, task, prompt, gold, payload."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    if task == "pubmedqa":
        df = datasets.pubmedqa()
        # A stratified order with the prefix property: each item's key is its (randomised) quantile
        # within its label, so the first n items keep the label mix for any n, and a smaller
        # sample is always a subset of a larger one (cached outcomes stay usable).
        u = rng.random(len(df))
        df = df.assign(_u=u)
        df["_key"] = df.groupby("decision")["_u"].rank(method="first") / df.groupby("decision")["_u"].transform("size")
        df = df.sort_values(["_key", "_u"]).head(n or len(df))
        rows = [{"qid": f"pubmedqa-{r.id}", "task": task, "prompt": r.question, "gold": r.decision,
                 "payload": " ".join(" ".join(r.contexts).split()[:CONTEXT_WORDS])} for r in df.itertuples()]
    elif task == "gsm8k":
        df = datasets.gsm8k_test()
        df = df.iloc[rng.permutation(len(df))].head(n or len(df))
        rows = [{"qid": r.qid, "task": task, "prompt": r.question, "gold": r.answer, "payload": ""}
                for r in df.itertuples()]
    else:
        raise LabError(f"task {task!r}: valid are {', '.join(TASKS)}")
    return pd.DataFrame(rows).reset_index(drop=True)


def _store(model: str) -> Path:
    d = paths.cache_dir() / "cost-outcomes"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{model.replace('/', '_')}.jsonl"


def cached(model: str) -> dict[str, dict]:
    """qid -> outcome row already measured for this model (a torn last line is skipped)."""
    path = _store(model)
    out = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: it is measured again
            out[d["qid"]] = d
    return out


def _label_logprobs(top: dict[str, float]) -> list[float]:
    floor = min(top.values()) if top else -30.0
    out = []
    for lab in tasks.PUBMEDQA_LABELS:
        hits = [v for k, v in top.items() if k.strip().lower() == lab]
        out.append(math.log(sum(math.exp(v) for v in hits)) if hits else floor - 1.0)
    return out


# Prompt styles (the prompt-optimization lever): "full" is the lab's prompt; the others are shorter
# instructions, chosen between on the dev split (scenario.prompts).
STYLES = ("full", "short", "terse")
_PUBMEDQA_SHORT = "Yes, no or maybe?"


def _pubmedqa_text(row) -> str:
    style = row.get("style") or "full"
    if style == "full":
        return tasks.pubmedqa_user_text(row["prompt"], row["payload"])
    if style == "short":
        return f"{row['payload']}\n\nQuestion: {row['prompt']}\n{_PUBMEDQA_SHORT}"
    return f"{row['payload']}\n{row['prompt']} (yes/no/maybe)"


def _gsm8k_messages(row) -> list[dict]:
    style = row.get("style") or "full"
    if style == "full":
        return tasks.gsm8k_messages(row["prompt"])
    if style == "short":
        return [{"role": "user", "content": f"{row['prompt']}\nShow brief steps, then 'The answer is N.'"}]
    return [{"role": "user", "content": f"{row['prompt']}\nGive only the final line 'The answer is N.'"}]


def answer(ep, row, require_logprobs: bool = True) -> dict:
    """One question's outcome (pred, correct, conf, token counts, seconds, the reply's text).
    require_logprobs=False: an answer without log-probs (a guard's canned reply) is returned with
    its text rather than raised; the caller decides what it means (system/ops/stack_quality.py)."""
    if row["task"] == "pubmedqa":
        msgs = [{"role": "user", "content": _pubmedqa_text(row)}]
        reply, lp = ep.chat_logprobs(msgs, max_tokens=1, top_logprobs=20, required=require_logprobs)
        v = _label_logprobs(lp.top_logprobs[0] if lp.top_logprobs else {})
        best = max(range(3), key=v.__getitem__)
        z = max(v)
        probs = [math.exp(x - z) for x in v]
        pred = tasks.PUBMEDQA_LABELS[best]
        return {"pred": pred, "correct": float(pred == row["gold"]), "conf": probs[best] / sum(probs),
                **{f"logp_{w}": round(x, 4) for w, x in zip(tasks.PUBMEDQA_LABELS, v)}, "text": reply.text,
                "has_logprobs": bool(lp.top_logprobs), "prompt_tokens": reply.prompt_tokens, "output_tokens": reply.output_tokens, "seconds": reply.seconds}
    reply, lp = ep.chat_logprobs(_gsm8k_messages(row), max_tokens=row.get("max_tokens", 320),
                                 top_logprobs=1, required=require_logprobs)
    pred = tasks.gsm8k_extract(reply.text)
    toks = [x for x in lp.token_logprobs if x is not None]
    return {"pred": pred, "correct": float(tasks.gsm8k_correct(pred, row["gold"])),
            "conf": float(sum(toks) / len(toks)) if toks else float("-inf"), "answer": reply.text,
            "finish_reason": reply.finish_reason,
            "prompt_tokens": reply.prompt_tokens, "output_tokens": reply.output_tokens, "seconds": reply.seconds}


def measure(model: str, items, log_dir: Path, *, max_tokens: int = 320, threads: int = 2, progress: bool = True,
            engine=None, key: str = "", concurrency: int = 1, engine_kind: str = "llamacpp"):
    """Outcomes of `model` (an alias llama.cpp serves, or a .gguf path) on `items` (from `sample`),
    measured once and cached under `key` (default: the model; a variant such as compressed
    prompts or another prompt style names its own key). Starts an engine (`engine_kind`:
    "llamacpp", one request at a time, or "llama-server" with `concurrency` slots) only if some
    question is not cached yet, or uses `engine`, an already running llm.engines.Engine.
    `concurrency` requests are in flight at once (answers are the same; the time is shared).
    Returns one row per item."""
    import pandas as pd
    from tqdm.auto import tqdm

    from llmarch_lab.llm import engines

    key = key or model
    done = cached(key)
    todo = [r for r in items.to_dict("records") if r["qid"] not in done]
    if todo:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        ctx = None
        if engine is None:
            ctx = engines.launch(engine_kind, model=model, log_path=log_dir / f"engine-{Path(model).stem}.log",
                                 max_model_len=2048,
                                 threads=threads, parallel=max(1, concurrency) if engine_kind == "llama-server" else 1)
            engine = ctx
        try:
            with open(_store(key), "a", encoding="utf-8") as f, \
                    tqdm(total=len(todo), desc=f"{key}: outcomes", disable=not progress, leave=False) as bar:
                for out in answer_all(engine, todo, key, max_tokens, concurrency):
                    f.write(json.dumps(out) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    done[out["qid"]] = out
                    bar.update(1)
        finally:
            if ctx is not None:
                ctx.stop()
    rows = [done[q] for q in items["qid"]]
    return pd.DataFrame(rows)


def answer_all(engine, todo: list[dict], key: str, max_tokens: int, concurrency: int):
    """Yield each question's outcome row as it completes, `concurrency` in flight on `engine`
    (an llm.engines.Engine or anything with .endpoint(timeout_s))."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def one(r):
        ep = engine.endpoint(timeout_s=900)
        t0 = time.time()
        res = answer(ep, {**r, "max_tokens": max_tokens})
        return {"qid": r["qid"], "task": r["task"], "model": key, "gold": r["gold"], **res,
                "concurrency": concurrency, "measured_at": t0}

    pending = iter(todo)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        live = {pool.submit(one, r) for r in itertools.islice(pending, max(1, concurrency))}
        while live:
            finished, live = wait(live, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                nxt = next(pending, None)
                if nxt is not None:
                    live.add(pool.submit(one, nxt))


def paired(items, small, large):
    """One row per question: qid, task, prompt, weak (small correct), strong (large correct),
    small_conf, and both models' token counts and seconds (the routing lab's outcome frame)."""
    s = small.set_index("qid")
    g = large.set_index("qid")
    out = items[["qid", "task", "prompt"]].copy()
    out["weak"] = out["qid"].map(s["correct"]).astype(float)
    out["strong"] = out["qid"].map(g["correct"]).astype(float)
    out["small_conf"] = out["qid"].map(s["conf"]).astype(float)
    for side, d in (("small", s), ("large", g)):
        for c in ("prompt_tokens", "output_tokens", "seconds"):
            out[f"{side}_{c}"] = out["qid"].map(d[c]).astype(float)
    return out


def speeds(df) -> dict[str, float]:
    """Prefill and decode tokens/s of one model from its own calls: PubMedQA calls generate one
    token, so their time is prefill; GSM8K's decode time is what is left after that prefill rate."""
    import numpy as np

    pq = df[df["task"] == "pubmedqa"]
    prefill = float(pq["prompt_tokens"].sum() / pq["seconds"].sum()) if len(pq) else float("nan")
    gs = df[df["task"] == "gsm8k"]
    if len(gs) and np.isfinite(prefill):
        decode_s = (gs["seconds"] - gs["prompt_tokens"] / prefill).clip(lower=1e-6)
        decode = float(gs["output_tokens"].sum() / decode_s.sum())
    else:
        decode = float("nan")
    return {"prefill_tok_s": prefill, "decode_tok_s": decode}
