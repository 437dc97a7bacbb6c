"""Synthetic traffic for the semantic cache, built from real pairs.

    from llmarch_lab.labs.cost import cache, trace
    t = trace.build_trace(2000, repeat_rate=0.4, paraphrase_share=0.5, near_miss_share=0.2, zipf_s=1.1, seed=0)
    r = trace.replay(cache.SemanticCache(cache.CHOSEN), t)
    trace.summary(r)   # hit_rate, wrong_hit_rate, large_calls_saved_share, latency_hit_ms_*, latency_miss_ms_*

Intents are the distinct text_a of the QQP dev pairs (their duplicate text_b are paraphrases,
their non-duplicate text_b are near-misses) plus GPTCache's 999 mock paraphrase pairs. A request
is a new intent with probability 1 - repeat_rate; otherwise it returns to an intent already seen,
drawn by a Zipf law over the intents' popularity ranks, and is a paraphrase of it
(paraphrase_share), a near-miss of it (near_miss_share: a different question, so not a
duplicate), or else an exact repeat.
"""

from __future__ import annotations

import time

from llmarch_lab import LabError

KINDS = ("new", "repeat", "paraphrase", "near_miss")


def _intents(seed: int):
    """[(origin, [paraphrases], [near-misses])] in a seeded shuffled popularity order."""
    import numpy as np

    from llmarch_lab.assets import datasets

    pairs = datasets.qqp_pairs()
    d: dict[str, tuple[list, list]] = {}
    for a, b, y in zip(pairs["text_a"].str.strip(), pairs["text_b"].str.strip(), pairs["label"]):
        d.setdefault(a, ([], []))[0 if int(y) == 1 else 1].append(b)
    for a, b in zip(*(datasets.paraphrases()[c].str.strip() for c in ("origin", "similar"))):
        d.setdefault(a, ([], []))[0].append(b)
    items = [(a, p, n) for a, (p, n) in d.items()]
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def build_trace(n_requests: int = 2000, repeat_rate: float = 0.4, paraphrase_share: float = 0.5,
                near_miss_share: float = 0.2, zipf_s: float = 1.1, seed: int = 0):
    """DataFrame of requests: request_id, text, kind, intent, source_id (the earlier intent a
    repeat or paraphrase duplicates, else None), is_duplicate_of (request_id of that intent's
    first request, else None), near_of (for a near-miss: the intent it resembles)."""
    import numpy as np
    import pandas as pd

    for name, v in (("repeat_rate", repeat_rate), ("paraphrase_share", paraphrase_share),
                    ("near_miss_share", near_miss_share)):
        if not 0.0 <= float(v) <= 1.0:
            raise LabError(f"build_trace: {name}={v!r} must be in [0, 1]")
    if paraphrase_share + near_miss_share > 1.0 + 1e-9:
        raise LabError("build_trace: paraphrase_share + near_miss_share must be <= 1")
    if not isinstance(n_requests, int) or n_requests < 1:
        raise LabError(f"build_trace: n_requests={n_requests!r} must be an integer >= 1")
    if not zipf_s > 0:
        raise LabError(f"build_trace: zipf_s={zipf_s!r} must be > 0")
    rng = np.random.default_rng(seed)
    pool = _intents(seed)
    used_p: dict[int, set] = {}
    used_n: dict[int, set] = {}
    seen: list[int] = []          # intent indices (= popularity ranks) already requested
    first: dict[int, int] = {}    # intent -> request_id of its first request
    nxt = 0
    rows = []
    for rid in range(n_requests):
        kind, intent = "new", None
        if seen and rng.random() < repeat_rate:
            w = (np.asarray(seen, float) + 1.0) ** -zipf_s
            intent = seen[int(rng.choice(len(seen), p=w / w.sum()))]
            u = rng.random()
            kind = "paraphrase" if u < paraphrase_share else "near_miss" if u < paraphrase_share + near_miss_share else "repeat"
        if kind == "new":
            if nxt >= len(pool):
                raise LabError(f"build_trace: only {len(pool)} intents; lower n_requests or raise repeat_rate")
            intent, nxt = nxt, nxt + 1
            seen.append(intent)
            first[intent] = rid
            rows.append((rid, pool[intent][0], "new", f"i{intent}", None, None, None))
            continue
        origin, paras, nears = pool[intent]
        if kind == "paraphrase":
            left = [p for p in paras if p not in used_p.setdefault(intent, set())] or paras
            if not left:
                kind = "repeat"
            else:
                text = left[int(rng.integers(len(left)))]
                used_p[intent].add(text)
                rows.append((rid, text, "paraphrase", f"i{intent}", f"i{intent}", first[intent], None))
                continue
        if kind == "near_miss":
            left = [p for p in nears if p not in used_n.setdefault(intent, set())]
            if not left:
                kind = "repeat"
            else:
                text = left[int(rng.integers(len(left)))]
                used_n[intent].add(text)
                rows.append((rid, text, "near_miss", f"n{intent}:{len(used_n[intent])}", None, None, f"i{intent}"))
                continue
        rows.append((rid, origin, "repeat", f"i{intent}", f"i{intent}", first[intent], None))
    return pd.DataFrame(rows, columns=["request_id", "text", "kind", "intent", "source_id", "is_duplicate_of", "near_of"])


def replay(cache, trace, progress: bool = True):
    """Serve the trace in order through cache.get (the real single-query path); a miss is a
    large-model call whose answer (the request's intent) is then put. Per request: hit,
    correct_hit (the cached answer is this request's intent), wrong_hit, latency_ms, similarity,
    verifier_prob."""
    import pandas as pd
    from tqdm.auto import tqdm

    out = []
    for rid, text, intent in tqdm(list(zip(trace["request_id"], trace["text"], trace["intent"])),
                                  desc="replay", disable=not progress, mininterval=2):
        t0 = time.perf_counter()
        h = cache.get(text)
        ms = (time.perf_counter() - t0) * 1e3
        if h is None:
            cache.put(text, intent)
        out.append({"request_id": rid, "hit": h is not None, "correct_hit": h is not None and h.answer == intent,
                    "wrong_hit": h is not None and h.answer != intent, "latency_ms": ms,
                    "similarity": None if h is None else h.similarity,
                    "verifier_prob": None if h is None else h.verifier_prob})
    r = pd.DataFrame(out)
    return trace[["request_id", "kind"]].merge(r, on="request_id")


def summary(replayed) -> dict:
    """hit_rate (correct hits / requests that duplicate an earlier one), wrong_hit_rate (wrong hits
    / all requests), large_calls_saved_share (hits / requests; wrong hits save a call too, at a
    price), correct_saved_share, per-kind hit shares and hit / miss latency percentiles."""
    from llmarch_lab.common import stats

    r = replayed
    n = len(r)
    dup = r["kind"].isin(["repeat", "paraphrase"])
    out = {"n_requests": n, "n_duplicates": int(dup.sum()),
           "hit_rate": float(r.loc[dup, "correct_hit"].sum() / max(int(dup.sum()), 1)),
           "wrong_hit_rate": float(r["wrong_hit"].sum() / max(n, 1)),
           "large_calls_saved_share": float(r["hit"].mean()) if n else 0.0,
           "correct_saved_share": float(r["correct_hit"].mean()) if n else 0.0}
    for k in ("repeat", "paraphrase", "near_miss", "new"):
        m = r["kind"] == k
        out[f"{k}_hit_share"] = float(r.loc[m, "hit"].mean()) if m.any() else None
    out.update(stats.percentiles(r.loc[r["hit"], "latency_ms"], "latency_hit_ms", required=False))
    out.update(stats.percentiles(r.loc[~r["hit"], "latency_ms"], "latency_miss_ms", required=False))
    return out
