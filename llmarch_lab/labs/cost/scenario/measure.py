"""The study's measurements: each configuration's answers to the same questions, with the machine
time they took, cached and resumable.

    from llmarch_lab.labs.cost.scenario import measure
    cfg = measure.Config("qwen1.5b-f16", "qwen2.5-coder-1.5b-instruct", qtype="F16", concurrency=4)
    rows = measure.run(cfg, pubmedqa_n=200, gsm8k_n=80, log_dir=run_dir)
    cost = measure.machine_seconds(cfg.key)          # {task: machine-seconds per request}

A configuration is a model, a GGUF precision (gguf_quant), a prompt style (outcomes.STYLES), a
context-compression ratio (compress) and the number of requests in flight on llama-server.
Answers go through outcomes.measure (one JSONL per configuration key, one line per question).
Machine time comes from timing blocks (`time_config`): on an otherwise idle machine, a fresh
engine per configuration answers the first questions of each task again with `concurrency` in
flight; each block's wall time (engine start excluded) and the load average are appended to
timings.jsonl. Machine-seconds per request = the blocks' seconds over their questions: the cost
model's measured throughput. The answer blocks' own wall times (walls.jsonl) are the fallback
when a configuration has no timing block; they are taken while other work may share the machine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.labs.cost import outcomes

LARGE = "qwen2.5-coder-1.5b-instruct"
SMALL = "qwen2.5-coder-0.5b-instruct"


@dataclass(frozen=True)
class Config:
    key: str
    model: str
    qtype: str = "source"          # gguf_quant type ("source": the packaged file itself)
    style: str = "full"            # outcomes.STYLES
    compress: float = 1.0          # context compression ratio (PubMedQA abstracts), 1 = none
    concurrency: int = 4           # requests in flight on llama-server
    max_tokens: int = 320
    tasks: tuple[str, ...] = ("pubmedqa", "gsm8k")

    def gguf(self) -> str:
        from llmarch_lab.labs.cost.scenario import gguf_quant

        return str(gguf_quant.variant(self.model, self.qtype))


def _log_path(name: str) -> Path:
    d = paths.cache_dir() / "cost-outcomes"
    d.mkdir(parents=True, exist_ok=True)
    return d / name


def _append(name: str, row: dict) -> None:
    with open(_log_path(name), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _blocks(name: str, key: str) -> dict[str, list[float]]:
    tot: dict[str, list[float]] = {}
    p = _log_path(name)
    if p.is_file():
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if d["key"] == key:
                t = tot.setdefault(d["task"], [0.0, 0.0])
                t[0] += d["seconds"]
                t[1] += d["questions"]
    return tot


def machine_seconds(key: str, with_source: bool = False):
    """{task: machine-seconds per request} of `key`: from its timing blocks, else from its answer
    blocks. with_source: {task: (seconds, "timing" | "answers")}."""
    out = {}
    for source, name in (("answers", "walls.jsonl"), ("timing", "timings.jsonl")):
        for task, (s, n) in _blocks(name, key).items():
            if n:
                out[task] = (s / n, source)
    return out if with_source else {t: v for t, (v, _) in out.items()}


def items_for(cfg: Config, task: str, n: int, compressor=None):
    """The task's first n questions (outcomes.sample), in the configuration's prompt style and
    with the abstract compressed when asked."""
    items = outcomes.sample(task, n)
    items["style"] = cfg.style
    if cfg.compress != 1.0 and task == "pubmedqa":
        if compressor is None:
            raise LabError(f"config {cfg.key}: compression needs a compressor")
        items["payload"] = [compressor.compress(t, cfg.compress) for t in items["payload"]]
    return items


def run(cfg: Config, log_dir: Path, pubmedqa_n: int, gsm8k_n: int, compressor=None, progress: bool = True):
    """Every task's outcomes for `cfg` (measuring what is missing on one llama-server), as one frame."""
    import pandas as pd

    from llmarch_lab.llm import engines

    ns = {"pubmedqa": pubmedqa_n, "gsm8k": gsm8k_n}
    want = {t: items_for(cfg, t, ns[t], compressor) for t in cfg.tasks if ns.get(t)}
    key = store_key(cfg)
    done = outcomes.cached(key)
    missing = {t: it for t, it in want.items() if not set(it["qid"]) <= set(done)}
    frames = []
    eng = None
    try:
        if missing:
            eng = engines.launch("llama-server", model=cfg.gguf(), log_path=Path(log_dir) / f"engine-{cfg.key}.log",
                                 max_model_len=2048, threads=2, parallel=cfg.concurrency, name=cfg.key)
        for task, it in want.items():
            n_new = len(set(it["qid"]) - set(outcomes.cached(key)))
            t0 = time.perf_counter()
            df = outcomes.measure(cfg.model, it, log_dir, key=key, max_tokens=cfg.max_tokens, engine=eng,
                                  concurrency=cfg.concurrency, progress=progress)
            if n_new:
                _append("walls.jsonl", {"key": key, "task": task, "questions": n_new, "seconds": time.perf_counter() - t0,
                                        "concurrency": cfg.concurrency, "load1": os.getloadavg()[0]})
            frames.append(df)
    finally:
        if eng is not None:
            eng.stop()
    return pd.concat(frames, ignore_index=True)


def time_config(cfg: Config, log_dir: Path, pubmedqa_n: int, gsm8k_n: int, compressor=None) -> dict[str, float]:
    """One timing block per task for `cfg` (see the module docstring): a fresh engine answers the
    first n questions again (answers are not stored), n at least the configuration's concurrency
    so every slot is busy. Returns {task: machine-seconds per request}."""
    from llmarch_lab.llm import engines

    ns = {t: max(n, cfg.concurrency) if n else 0 for t, n in (("pubmedqa", pubmedqa_n), ("gsm8k", gsm8k_n))}
    key = store_key(cfg)
    out = {}
    with engines.launch("llama-server", model=cfg.gguf(), log_path=Path(log_dir) / f"timing-{cfg.key}.log",
                        max_model_len=2048, threads=2, parallel=cfg.concurrency, name=cfg.key) as eng:
        for task in cfg.tasks:
            if not ns.get(task):
                continue
            rows = items_for(cfg, task, ns[task], compressor).to_dict("records")
            t0 = time.perf_counter()
            n = sum(1 for _ in outcomes.answer_all(eng, rows, key, cfg.max_tokens, cfg.concurrency))
            secs = time.perf_counter() - t0
            _append("timings.jsonl", {"key": key, "task": task, "questions": n, "seconds": secs,
                                      "concurrency": cfg.concurrency, "load1": os.getloadavg()[0], "at": time.time()})
            out[task] = secs / n
    return out


# The study's configurations, in the order they are measured (each resumes on its own). `share`
# scales the sample for configurations that only need a subset (the single-stream and offline
# machine-time blocks; their answers are the same model's). Keys name roles; with other models
# than the study's (tests) the outcome store's key adds the model (store_key).
def study(large: str = LARGE, small: str = SMALL, max_tokens: int = 320) -> tuple[tuple[Config, float], ...]:
    return tuple((replace(c, max_tokens=max_tokens), share) for c, share in _study(large, small))


def _study(large: str, small: str) -> tuple[tuple[Config, float], ...]:
    return (
        (Config("large-f16", large, "F16"), 1.0),                       # the baseline's answers
        (Config("small-q4km", small, "source"), 1.0),                   # the routing tier
        (Config("large-f16-c1", large, "F16", concurrency=1), 0.15),    # the baseline's machine time
        (Config("large-q8_0", large, "Q8_0"), 1.0),
        (Config("large-f16-cc2", large, "F16", compress=2.0, tasks=("pubmedqa",)), 1.0),
        (Config("large-f16-cc4", large, "F16", compress=4.0, tasks=("pubmedqa",)), 1.0),
        (Config("large-f16-c8", large, "F16", concurrency=8), 0.25),    # offline batches
        # Prompt optimization: GSM8K's instruction and answer length (PubMedQA's instruction is 20
        # of ~450 prompt tokens: its lever is context compression).
        (Config("large-f16-short", large, "F16", style="short", tasks=("gsm8k",)), 1.0),
        (Config("large-f16-terse", large, "F16", style="terse", tasks=("gsm8k",)), 1.0),
        (Config("large-q4_0", large, "Q4_0"), 1.0),
        (Config("large-q3_k_m", large, "Q3_K_M"), 1.0),
        (Config("large-q2_k", large, "Q2_K"), 1.0),
        (Config("small-f16", small, "F16"), 1.0),
    )


def store_key(cfg: Config) -> str:
    """The outcome store's key: the role key for the study's own models, else key@model."""
    return cfg.key if cfg.model in (LARGE, SMALL) else f"{cfg.key}@{Path(cfg.model).stem}"


STUDY = study()
CONFIGS = {c.key: c for c, _ in STUDY}
