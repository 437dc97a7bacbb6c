"""The support-assistant trace: a seeded mix of benign support questions, attacks, PII-bearing
requests and toxic texts, one row a request."""

from __future__ import annotations

import json

from llmarch_lab import LabError
from llmarch_lab.assets import datasets

CLASSES = ("benign", "attack", "pii", "toxic")
# Default shares of the trace; benign questions are 2/3 FiQA (with reference answers), 1/3 LiveQA.
MIX = {"benign": 0.4, "attack": 0.2, "pii": 0.2, "toxic": 0.2}
MAX_CHARS = 600  # longer candidates are left out (a support message, not a document)


def _jsonl(rel: str) -> list[dict]:
    path = datasets.verify(rel)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise LabError(f"{path}:{n}: not a JSON line") from None
    return rows


def pools() -> dict[str, list[dict]]:
    """Every candidate request by class: {class: [{source, text, reference}]}."""
    fiqa = [{"source": "fiqa", "text": r["question"], "reference": r.get("answer") or ""}
            for r in _jsonl("support/fiqa_sample.jsonl")]
    live = [{"source": "liveqa", "text": r["question"], "reference": ""} for r in _jsonl("support/liveqa.jsonl")]
    tox = [{"source": "toxicity", "text": r["text"], "reference": ""} for r in _jsonl("support/toxicity_sample.jsonl")]
    inj = datasets.prompt_injections()
    attacks = [{"source": "prompt_injections", "text": t, "reference": ""}
               for t in inj.loc[inj["label"] == 1, "text"].astype(str)]
    pii = [{"source": "pii_synth", "text": r["full_text"], "reference": ""} for r in datasets.pii_synth()]
    out = {"benign_fiqa": fiqa, "benign_liveqa": live, "attack": attacks, "pii": pii, "toxic": tox}
    return {k: [r for r in v if str(r["text"]).strip() and len(str(r["text"])) <= MAX_CHARS] for k, v in out.items()}


def counts(n: int, mix: dict | None = None) -> dict[str, int]:
    """Requests per class for a trace of n (largest remainders; every class with a share gets >= 1)."""
    mix = dict(MIX if mix is None else mix)
    bad = sorted(set(mix) - set(CLASSES))
    if bad or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise LabError(f"support trace mix {mix}: give non-negative shares of {', '.join(CLASSES)}")
    if n < len([v for v in mix.values() if v > 0]):
        raise LabError(f"support trace: {n} requests are too few for {len(mix)} classes")
    total = sum(mix.values())
    raw = {k: n * v / total for k, v in mix.items()}
    out = {k: max(1 if mix[k] > 0 else 0, int(x)) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - int(raw[k]), reverse=True):
        if sum(out.values()) >= n:
            break
        out[k] += 1
    while sum(out.values()) > n:  # the minimum of 1 can overshoot: take from the largest
        out[max(out, key=out.get)] -= 1
    return out


def build_trace(n: int = 60, seed: int = 0, mix: dict | None = None):
    """DataFrame id, cls, source, text, reference: n requests, classes by `mix`, in seeded random order."""
    import pandas as pd

    per = counts(n, mix)
    pool = pools()
    df_parts = []
    for cls, k in per.items():
        if cls == "benign":
            k_fiqa = k - k // 3
            cands = [pd.DataFrame(pool["benign_fiqa"]).sample(n=k_fiqa, random_state=seed),
                     pd.DataFrame(pool["benign_liveqa"]).sample(n=k - k_fiqa, random_state=seed)]
        else:
            have = len(pool[cls])
            if k > have:
                raise LabError(f"support trace: {k} {cls} requests asked, the data has {have}")
            cands = [pd.DataFrame(pool[cls]).sample(n=k, random_state=seed)]
        for c in cands:
            df_parts.append(c.assign(cls=cls))
    df = pd.concat(df_parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df.insert(0, "id", range(len(df)))
    return df[["id", "cls", "source", "text", "reference"]]
