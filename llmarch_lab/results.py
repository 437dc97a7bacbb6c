"""The plain result object every lab returns, and the one metrics schema all labs share.

Labs never call MLflow; they return a `Result`, and `tracking.LabRun.log_result` records it.
Metric names carry a prefix that says what they measure, so comparison code needs no per-lab
knowledge; every metric's direction, unit and meaning is declared in `schema.SPECS`:

    quality.*      higher or lower is better per metric (perplexity, ndcg_at_10, accuracy, f1)
    latency.*      `_ms` (optionally `_p50/_p90/_p95/_p99`) or `_s` for whole phases (load_s)
    throughput.*   per second (output_tok_per_s, req_per_s, docs_per_s)
    memory.*_mb    megabytes (weights_mb, peak_rss_mb)
    cost.*         dollars (usd_per_1m_output_tokens)
    errors.*       failure rates and disagreements, lower is better (error_rate)
    count.*        counters and chosen settings, never ranked (judge_failures, best_step)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llmarch_lab import LabError, schema

METRIC_RE = schema.NAME_RE


def check_metric(name: str, value: Any) -> float:
    """Validate a metric name against the schema (declared in schema.SPECS) and its value as a
    finite number."""
    schema.check(name)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LabError(f"metric {name!r}: not a number ({value!r})") from None
    if math.isnan(v) or math.isinf(v):
        raise LabError(f"metric {name!r}: not finite ({v})")
    return v


@dataclass
class Result:
    """What a lab produced: metrics on the schema, tables and figures for artifacts, extra tags."""

    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)  # name -> pandas.DataFrame (per-sample rows)
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # name -> text artifact (e.g. a markdown table)

    def __post_init__(self):
        for k, v in self.metrics.items():
            self.metrics[k] = check_metric(k, v)

    def add(self, name: str, value: Any) -> None:
        self.metrics[name] = check_metric(name, value)
