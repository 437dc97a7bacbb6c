"""PubMedQA for fine-tuning: splits, chat prompts, and the dataset quality gate.

    from llmarch_lab import datasets, finetune_data as fd
    df = datasets.pubmedqa()
    splits = fd.split(df, dev_fraction=0.2, seed=0)            # train / dev (stratified) / test (official 500)
    gate = fd.quality_gate(splits, tok, context_tokens=256, max_length=512)   # LabError on leakage

Test = the official 500 test ids. The other 500 are split into train and dev, stratified by
label with a fixed seed. test_ground_truth.json is ordered by label, so any quick subset
(`sample`) is stratified and random, never the first N.

Prompt: the question and its abstract (context passages joined, cut to `context_tokens` tokens)
as the user turn of the model's chat template; target: the decision word, optionally followed by
the long answer. Rows are TRL's conversational prompt-completion format, so the SFT loss falls on
the completion only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmarch_lab import LabError
from llmarch_lab.assets import tasks

LABELS = tasks.PUBMEDQA_LABELS
INSTRUCTION = tasks.PUBMEDQA_INSTRUCTION


@dataclass
class Splits:
    train: "object"  # pandas DataFrame, columns of datasets.pubmedqa()
    dev: "object"
    test: "object"


def split(df, dev_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Official test 500 as test; the rest split train/dev stratified by decision (sklearn)."""
    from sklearn.model_selection import train_test_split

    test = df[df.is_test].reset_index(drop=True)
    rest = df[~df.is_test].reset_index(drop=True)
    train, dev = train_test_split(rest, test_size=dev_fraction, random_state=seed, stratify=rest.decision)
    return Splits(train.reset_index(drop=True), dev.reset_index(drop=True), test)


def sample(df, n: int, seed: int = 0):
    """A stratified random subset of n rows (all rows when n <= 0 or n >= len): never the first N."""
    if n <= 0 or n >= len(df):
        return df.reset_index(drop=True)
    from sklearn.model_selection import train_test_split

    part, _ = train_test_split(df, train_size=n, random_state=seed, stratify=df.decision)
    return part.reset_index(drop=True)


def truncate(tok, text: str, n_tokens: int, side: str = "head") -> tuple[str, bool]:
    """(text cut to n_tokens tokens, whether it was cut): its first tokens (side="head") or its
    last (side="tail"). PubMedQA contexts run background -> methods -> results, and the results
    carry the answer, so a short budget is better spent on the tail."""
    ids = tok(text, add_special_tokens=False).input_ids
    if len(ids) <= n_tokens:
        return text, False
    if side == "tail":
        return "... " + tok.decode(ids[-n_tokens:]), True
    return tok.decode(ids[:n_tokens]), True


user_text = tasks.pubmedqa_user_text


def to_rows(df, tok, context_tokens: int, long_answer: bool = False, context_side: str = "head") -> list[dict]:
    """TRL conversational prompt-completion rows (+ id, decision, context_truncated)."""
    rows = []
    for r in df.itertuples(index=False):
        context, cut = truncate(tok, " ".join(r.contexts), context_tokens, context_side)
        target = r.decision + (f". {r.long_answer}" if long_answer and r.long_answer else "")
        rows.append({"id": r.id, "decision": r.decision, "context_truncated": cut,
                     "prompt": [{"role": "user", "content": user_text(r.question, context)}],
                     "completion": [{"role": "assistant", "content": target}]})
    return rows


def oversample(rows: list[dict], seed: int = 0) -> list[dict]:
    """Class-balanced copy of train rows: each label's rows repeated (whole copies, then a seeded
    random remainder) up to the majority label's count, shuffled. Without it, a few dozen steps
    on 55% 'yes' teach the label prior first and the adapter collapses onto 'yes'."""
    import random

    rng = random.Random(seed)
    by = {w: [r for r in rows if r["decision"] == w] for w in LABELS}
    n = max(len(v) for v in by.values())
    out = []
    for v in by.values():
        if v:
            out += v * (n // len(v)) + rng.sample(v, n % len(v))
    rng.shuffle(out)
    return out


def prompt_text(tok, row: dict) -> str:
    """The rendered prompt the model scores: chat template up to the assistant turn's start."""
    return tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)


# ------------------------------------------------------------------------------- quality gate

@dataclass
class Gate:
    """What the quality gate found. `table` has one row per check; `figure` the length histogram."""

    table: "object"
    lengths: "object"  # DataFrame: split, id, prompt_tokens, total_tokens
    figure: "object"
    metrics: dict[str, float] = field(default_factory=dict)


def _norm(q: str) -> str:
    from rapidfuzz import utils

    return utils.default_process(q)  # lower-case, punctuation to spaces, trimmed


def near_pairs(a: list[str], b: list[str] | None, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, score) of question pairs with rapidfuzz ratio >= threshold (0-100) on normalized
    text; with b None, pairs inside a (i < j). rapidfuzz's cdist is C++ and takes ~1 s for 1000^2."""
    import numpy as np
    from rapidfuzz import fuzz, process

    na = [_norm(x) for x in a]
    nb = na if b is None else [_norm(x) for x in b]
    m = process.cdist(na, nb, scorer=fuzz.ratio, score_cutoff=threshold, dtype=np.uint8)
    if b is None:
        m = np.triu(m, k=1)
    return [(int(i), int(j), float(m[i, j])) for i, j in zip(*np.nonzero(m))]


def quality_gate(splits: Splits, tok, context_tokens: int, max_length: int, long_answer: bool = False,
                 near_dup_threshold: float = 90.0, context_side: str = "head") -> Gate:
    """Empty / over-long rows, duplicate and near-duplicate questions, label balance, token
    lengths, and train/dev vs test leakage. Leakage raises LabError naming the ids."""
    import pandas as pd

    checks, length_rows = [], []
    parts = {"train": splits.train, "dev": splits.dev, "test": splits.test}
    for name, df in parts.items():
        empty = df[(df.question.str.strip() == "") | (df.contexts.map(lambda c: not "".join(c).strip()))
                   | (df.decision.isin(LABELS) == False)]  # noqa: E712 - pandas elementwise
        checks.append({"split": name, "check": "empty_or_bad_label", "count": len(empty),
                       "detail": ", ".join(empty.id.astype(str)[:10])})
        rows = to_rows(df, tok, context_tokens, long_answer, context_side)
        for row in rows:
            p = len(tok(prompt_text(tok, row), add_special_tokens=False).input_ids)
            full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
            length_rows.append({"split": name, "id": row["id"], "prompt_tokens": p,
                                "total_tokens": len(tok(full, add_special_tokens=False).input_ids),
                                "context_truncated": row["context_truncated"]})
        lens = pd.DataFrame([r for r in length_rows if r["split"] == name])
        over = lens[lens.total_tokens > max_length]
        if name == "train" and len(over) == len(lens):
            # TRL cuts at max_length and drops rows whose completion was cut away: nothing to train.
            raise LabError(f"max_length={max_length}: every train example is longer "
                           f"(shortest {lens.total_tokens.min()} tokens); raise max_length or lower context_tokens")
        checks.append({"split": name, "check": f"over_max_length_{max_length}", "count": len(over),
                       "detail": ", ".join(over.id.astype(str)[:10])})
        checks.append({"split": name, "check": f"context_cut_to_{context_tokens}_tokens",
                       "count": int(lens.context_truncated.sum()), "detail": ""})
        exact = df[df.question.map(_norm).duplicated()]
        checks.append({"split": name, "check": "duplicate_question", "count": len(exact),
                       "detail": ", ".join(exact.id.astype(str)[:10])})
        near = near_pairs(list(df.question), None, near_dup_threshold)
        checks.append({"split": name, "check": f"near_duplicate_question_ratio>={near_dup_threshold:g}",
                       "count": len(near), "detail": "; ".join(f"{df.id[i]}~{df.id[j]}" for i, j, _ in near[:10])})
        share = df.decision.value_counts(normalize=True)
        checks.append({"split": name, "check": "label_share", "count": len(df),
                       "detail": ", ".join(f"{k}={share.get(k, 0):.2f}" for k in LABELS)})

    # Leakage: any train/dev question equal or near-equal to a test question fails the run.
    leaks = []
    for name in ("train", "dev"):
        a = parts[name]
        for i, j, score in near_pairs(list(a.question), list(splits.test.question), near_dup_threshold):
            leaks.append(f"{name} {a.id[i]} ~ test {splits.test.id[j]} (ratio {score:.0f})")
        shared = set(a.id) & set(splits.test.id)
        leaks += [f"{name} id {x} is also a test id" for x in sorted(shared)]
    checks.append({"split": "train+dev vs test", "check": "leakage", "count": len(leaks),
                   "detail": "; ".join(leaks[:10])})
    table = pd.DataFrame(checks)
    lengths = pd.DataFrame(length_rows)
    if leaks:
        raise LabError(f"train/test leakage: {len(leaks)} train/dev question(s) duplicate test questions "
                       f"(rapidfuzz ratio >= {near_dup_threshold:g}): {'; '.join(leaks[:3])}"
                       + (" ..." if len(leaks) > 3 else ""))
    metrics = {"count.gate_over_length_rows": float(table[table.check.str.startswith("over_")]["count"].sum()),
               "count.gate_duplicate_questions": float(table[table.check.str.contains("duplicate")]["count"].sum()),
               "count.gate_leaked_questions": 0.0}
    return Gate(table=table, lengths=lengths, figure=length_histogram(lengths, max_length), metrics=metrics)


def length_histogram(lengths, max_length: int):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, g in lengths.groupby("split", sort=False):
        ax.hist(g.total_tokens, bins=30, alpha=0.5, label=f"{name} (n={len(g)})")
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length={max_length}")
    ax.set_xlabel("tokens per example (chat template, prompt + completion)")
    ax.set_ylabel("examples")
    ax.set_title("PubMedQA token lengths after context truncation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
