"""Items from PubMedQA, every strategy on every item, the summary and its MLflow metrics."""

from __future__ import annotations

import sys
from dataclasses import asdict

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules import as_text  # noqa: F401 - also validation.as_text
from llmarch_lab.labs.guardrails.validation.schema import MAX_TOKENS, STRATEGIES, build_messages
from llmarch_lab.labs.guardrails.validation.strategies import ask, constraint_body, run_constrained, run_plain, run_reask

# ------------------------------------------------------------------------------------ items, evaluation

def sample_items(n: int, seed: int = 0, df=None):
    """A stratified random sample of PubMedQA by final_decision (proportional, largest remainder,
    at least one per class when n >= 3). The file is ordered by label: never take the first n."""
    import numpy as np

    from llmarch_lab.assets import datasets

    df = datasets.pubmedqa() if df is None else df
    if not isinstance(n, int) or n < 1:
        raise LabError(f"n_items must be a positive integer, got {n!r}")
    n = min(n, len(df))
    counts = df["decision"].value_counts()
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    if n >= len(counts):
        take = take.clip(lower=1)
    for lab in (quota - np.floor(quota)).sort_values(ascending=False).index:
        if take.sum() >= n:
            break
        take[lab] += 1
    while take.sum() > n:  # the clip(lower=1) above can overshoot: trim the largest class
        take[take.idxmax()] -= 1
    rng = np.random.default_rng(seed)
    parts = [df[df["decision"] == lab].iloc[rng.permutation(int(c))[: int(take[lab])]]
             for lab, c in counts.items() if take[lab] > 0]
    import pandas as pd

    out = pd.concat(parts)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def _rows(items) -> list[dict]:
    if hasattr(items, "to_dict"):
        items = items.to_dict("records")
    rows = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "long_answer" not in it or "decision" not in it:
            raise LabError(f"item {i}: needs long_answer and decision (and question, id), got {type(it).__name__}")
        rows.append({"id": it.get("id", i), "question": it.get("question", ""),
                     "long_answer": it["long_answer"], "decision": it["decision"]})
    return rows


def summarize(per_item):
    """One row per strategy: rates, latency percentiles, tokens and retries; extra_* are the
    strategy's mean minus plain's mean (NaN when plain was not run)."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.common import stats

    rows = []
    for name, g in per_item.groupby("strategy", sort=False):
        lat = stats.percentiles(g["latency_ms"], "latency_ms")
        rows.append({"strategy": name, "n": len(g), "valid_rate": g["valid"].mean(),
                     "schema_valid_rate": g["schema_valid"].mean(), "field_accuracy": g["correct"].mean(),
                     "decision_accuracy": (g["parsed_decision"] == g["gold"]).mean(),
                     "latency_ms_mean": lat["latency_ms_mean"], "latency_ms_p50": lat["latency_ms_p50"],
                     "latency_ms_p95": lat["latency_ms_p95"],
                     "completion_tokens_mean": pd.to_numeric(g["completion_tokens"]).mean(),
                     "prompt_tokens_mean": pd.to_numeric(g["prompt_tokens"]).mean(),
                     "calls_mean": g["calls"].mean(), "retries_mean": g["retries"].mean(),
                     "retries_max": int(g["retries"].max()),
                     "endpoint_errors": int(g["error"].str.startswith("endpoint:").sum())})
    out = pd.DataFrame(rows)
    base = out[out["strategy"] == "plain"]
    lat0 = float(base["latency_ms_mean"].iloc[0]) if len(base) else np.nan
    tok0 = float(base["completion_tokens_mean"].iloc[0]) if len(base) else np.nan
    out.insert(out.columns.get_loc("completion_tokens_mean"), "extra_latency_ms", out["latency_ms_mean"] - lat0)
    out["extra_tokens"] = out["completion_tokens_mean"] - tok0
    return out


def evaluate_strategies(endpoint, items, strategies=STRATEGIES, max_retries: int = 2,
                        constraint: str = "auto", max_tokens: int = MAX_TOKENS, progress: bool = True,
                        warmup: bool = True):
    """(summary DataFrame, per-item DataFrame) of each strategy over the same items.

    `endpoint`: any llm.endpoint.Endpoint. `items`: a DataFrame or dicts with id, question,
    long_answer, decision (e.g. sample_items(n)). The endpoint is preflighted, warmed up with one
    throwaway request (the first llama.cpp request pays one-off setup); then the strategies take
    turns, item by item (see below)."""
    import pandas as pd

    strategies = list(dict.fromkeys([strategies] if isinstance(strategies, str) else strategies))
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise LabError(f"strategies {list(strategies)!r}: choose from {', '.join(STRATEGIES)}")
    rows = _rows(items)
    if not rows:
        raise LabError("evaluate_strategies: no items")
    endpoint.preflight()
    body = constraint_body(constraint, endpoint) if "constrained" in strategies else None
    if warmup:
        ask(endpoint, build_messages("Is this a warm-up?", "Yes."), 8)
    # Round-robin over the strategies, each on a different item at each step (strategy k runs
    # item (step + k * n // len(strategies)) mod n): every strategy sees the same, drifting machine
    # load, and consecutive requests are never the same item, so llama.cpp's reuse of the
    # previous request's KV cache cannot hand one strategy another's prompt for free.
    n, k = len(rows), max(1, len(rows) // len(strategies))
    steps = [(s, rows[(step + j * k) % n]) for step in range(n) for j, s in enumerate(strategies)]
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="items x strategies", file=sys.stderr, leave=False)
    out = []
    for s, item in steps:
        if s == "plain":
            out.append(run_plain(endpoint, item, max_tokens))
        elif s == "reask":
            out.append(run_reask(endpoint, item, max_retries, max_tokens))
        else:
            out.append(run_constrained(endpoint, item, max_tokens=max_tokens, body=body))
    per_item = pd.DataFrame([asdict(o) for o in out])
    return summarize(per_item), per_item


def mlflow_metrics(summary) -> dict[str, float]:
    """Suggested metric names, one set per strategy. `quality.{s}_field_accuracy` and
    `latency.validation_{s}_ms_*` fit schema.py's existing families; `quality.{s}_valid_rate`,
    `count.{s}_extra_tokens` and `count.{s}_retries_mean` need specs there before a lab logs them."""
    m = {}
    for r in summary.to_dict("records"):
        s = r["strategy"]
        m[f"quality.{s}_valid_rate"] = float(r["valid_rate"])
        m[f"quality.{s}_field_accuracy"] = float(r["field_accuracy"])
        for k in ("p50", "p95", "mean"):
            m[f"latency.validation_{s}_ms_{k}"] = float(r[f"latency_ms_{k}"])
        m[f"latency.validation_{s}_extra_ms_mean"] = float(r["extra_latency_ms"])
        m[f"count.{s}_extra_tokens"] = float(r["extra_tokens"])
        m[f"count.{s}_retries_mean"] = float(r["retries_mean"])
    return m
