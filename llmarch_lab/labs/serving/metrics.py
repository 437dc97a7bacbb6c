"""From per-request records to the results schema: latency percentiles, throughput, goodput under
an SLO, error rate, cost per million output tokens, and the memory-bandwidth roofline.

Percentiles are the shared set (common.stats.percentiles: p50/p90/p95/p99 + mean).
"""

from __future__ import annotations

import time

from llmarch_lab.common import stats
from llmarch_lab.llm.load import Record


def _pcts(name: str, values, out: dict) -> None:
    out.update(stats.percentiles(values, f"latency.{name}_ms", required=False))


def meets_slo(r: Record, slo_ttft_ms: float, slo_tpot_ms: float) -> bool:
    return r.ok and r.ttft_ms is not None and r.ttft_ms <= slo_ttft_ms and (r.tpot_ms is None or r.tpot_ms <= slo_tpot_ms)


def summarize(records: list[Record], wall_s: float, slo_ttft_ms: float = 200.0, slo_tpot_ms: float = 50.0,
              usd_per_hour: float = 0.0) -> dict[str, float]:
    """Schema metrics for one load level. Throughputs are over the level's wall time (first send
    to last completion), so ramp-up and the tail are part of them, as they are for a user."""
    ok = [r for r in records if r.ok]
    out: dict[str, float] = {}
    _pcts("ttft", [r.ttft_ms for r in ok], out)
    _pcts("itl", [g for r in ok for g in r.itl_ms], out)
    _pcts("tpot", [r.tpot_ms for r in ok if r.tpot_ms is not None], out)
    _pcts("e2e", [r.e2e_ms for r in ok], out)
    wall_s = max(wall_s, 1e-9)
    out_tok = sum(r.output_tokens for r in ok)
    out["throughput.req_per_s"] = len(ok) / wall_s
    out["throughput.output_tok_per_s"] = out_tok / wall_s
    out["throughput.total_tok_per_s"] = (out_tok + sum(r.prompt_tokens for r in ok)) / wall_s
    out["throughput.goodput_req_per_s"] = sum(meets_slo(r, slo_ttft_ms, slo_tpot_ms) for r in records) / wall_s
    out["quality.slo_attainment"] = sum(meets_slo(r, slo_ttft_ms, slo_tpot_ms) for r in records) / max(len(records), 1)
    out["errors.error_rate"] = (len(records) - len(ok)) / max(len(records), 1)
    out["count.malformed_chunks"] = float(sum(r.malformed_chunks for r in records))
    if usd_per_hour > 0 and out_tok > 0:
        out["cost.usd_per_1m_output_tokens"] = usd_per_hour / 3600.0 / out["throughput.output_tok_per_s"] * 1e6
    return out


def copy_bandwidth_gbs(mb: int = 512, repeats: int = 5, threads: int = 2) -> float:
    """Memory bandwidth this machine sustains, measured like STREAM's copy kernel: a buffer far
    larger than the caches copied by `threads` threads, best of `repeats`, counting bytes read
    plus bytes written. numpy's copy releases the GIL, so the threads run in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    n = mb * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(n), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if len(p)]

    def copy(b):
        np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]])

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(copy, bounds))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def roofline(single_stream_tok_per_s: float, weights_bytes: int, bandwidth_gbs: float) -> dict[str, float]:
    """Decoding one token reads every weight once, so bandwidth / weight bytes bounds the
    single-stream decode rate; the efficiency is how close an engine gets to that bound."""
    limit = bandwidth_gbs * 1e9 / max(weights_bytes, 1)
    return {"throughput.roofline_decode_tok_per_s": limit,
            "throughput.roofline_efficiency": single_stream_tok_per_s / limit,
            "memory.served_weights_mb": weights_bytes / 2**20,
            "throughput.copy_bandwidth_gb_per_s": bandwidth_gbs}
