"""Measurement fidelity: how far from the truth is what a load generator reports?

The target is the loopback server (llmarch_lab.llm.loopback) run with exactly known timing: the
first chunk `ttft_ms` after a request gets a slot, then one chunk every `itl_ms`, at most
`max_concurrency` streams at a time (the rest queue), every arrival and send time recorded by the
server itself. The truth is what the server did (its recorded times), not what it was told to do,
so a late send on a busy CPU is not charged to the client.

    truth = fidelity.truth_metrics(httpx.get(base + "/truth").json())
    errors = fidelity.errors(tool_metrics, truth)     # {metric: signed error %}

Metrics compared (the ones every tool reports): TTFT p50 and p99, ITL p50, output tokens/s.
Percentiles are common.stats' (numpy linear), the same method as guidellm and vLLM's benchmark.
"""

from __future__ import annotations

from llmarch_lab import LabError

METRICS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "output_tok_per_s")


def truth_metrics(truth: dict) -> dict[str, float]:
    """The server-recorded truth of one level: TTFT (arrival to first chunk sent, queueing
    included), ITL (gaps between a request's chunk sends), output tokens/s (chunks sent over the
    span from the first arrival to the last send)."""
    from llmarch_lab.common import stats

    reqs = [r for r in truth.get("requests", []) if r.get("sent")]
    if not reqs:
        raise LabError("truth: the server recorded no streamed request (was /truth/reset called after the load?)")
    ttft = [1000.0 * (r["sent"][0] - r["arrived"]) for r in reqs]
    itl = [1000.0 * (b - a) for r in reqs for a, b in zip(r["sent"], r["sent"][1:])]
    span = max(r["sent"][-1] for r in reqs) - min(r["arrived"] for r in reqs)
    t = stats.percentiles(ttft, "ttft")
    out = {"ttft_p50_ms": t["ttft_p50"], "ttft_p99_ms": t["ttft_p99"],
           "output_tok_per_s": sum(len(r["sent"]) for r in reqs) / span if span > 0 else float("nan"),
           "requests": float(len(reqs))}
    if itl:
        out["itl_p50_ms"] = stats.percentiles(itl, "itl")["itl_p50"]
    return out


def from_lab(m: dict) -> dict[str, float]:
    """The lab's level metrics (serving.metrics.summarize) under the compared names."""
    return {"ttft_p50_ms": m.get("latency.ttft_ms_p50"), "ttft_p99_ms": m.get("latency.ttft_ms_p99"),
            "itl_p50_ms": m.get("latency.itl_ms_p50"), "output_tok_per_s": m.get("throughput.output_tok_per_s")}


def errors(measured: dict, truth: dict) -> dict[str, float]:
    """{metric: 100 * (measured - truth) / truth} over METRICS; NaN where either side is missing."""
    out = {}
    for k in METRICS:
        mv, tv = measured.get(k), truth.get(k)
        out[k] = 100.0 * (mv - tv) / tv if mv is not None and tv else float("nan")
    return out


def worst(rows) -> float:
    """Largest absolute error % over rows of errors() (NaNs skipped; NaN if there is none)."""
    vals = [abs(v) for r in rows for v in r.values() if v == v]
    return max(vals) if vals else float("nan")
