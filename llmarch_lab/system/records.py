"""The components of candidate systems, read from the labs' MLflow records: every serving run with a
concurrency sweep, every injection guard with both quality and latency runs, every finished run
(for quality lookups and links). How the chooser uses them: chooser.py's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.store import tracking
from llmarch_lab.system.requirements import Requirements

SWEEP_KEYS = ("latency.ttft_ms_p50", "latency.ttft_ms_p99", "latency.tpot_ms_p50", "latency.tpot_ms_p99",
              "latency.e2e_ms_p50", "latency.e2e_ms_p99", "throughput.req_per_s", "throughput.output_tok_per_s",
              "errors.error_rate")


@dataclass
class Serving:
    run_id: str
    experiment: str
    run_name: str
    engine: str
    model: str
    profile: str
    params: dict
    levels: list[dict]  # {level, ttft_ms_p50, ..., req_per_s, error_rate}
    gpu: str = "none"
    requests: object = None  # DataFrame: the run's per-request table (level, ttft_ms, e2e_ms, tpot_ms)

    @property
    def label(self) -> str:
        n = str(self.params.get("parallel", "") or "")
        slots = f" x{n} slots" if self.engine in ("llama-server", "openvino", "ctranslate2") and n not in ("", "1") else ""
        return f"{self.engine}/{model_label(self.model)}{slots}"


@dataclass
class Guard:
    detector: str  # "none" = no guard
    f1_run: dict | None = None  # guardrails part=outside (injection) run, else part=injection
    latency_run: dict | None = None  # part=gateway or part=stack run
    latency_kind: str = ""  # "gateway (measured)" | "stack (composed)" | ""
    added_ms: dict = field(default_factory=dict)  # {p50, p99}
    fpr: float = 0.0

    @property
    def label(self) -> str:
        return "no guard" if self.detector == "none" else f"guard:{self.detector}"


@dataclass
class Components:
    serving: list[Serving]
    guards: list[Guard]
    runs: list[dict]  # every finished run read (for quality lookups and links)
    experiments: dict[str, str]  # experiment name -> id (for links)


def _sweep(run_id: str) -> list[dict]:
    series = {k: dict(tracking.metric_history(run_id, k.replace(".", ".sweep.", 1))) for k in SWEEP_KEYS}
    steps = sorted(series["throughput.req_per_s"])
    out = []
    for s in steps:
        row = {"level": s}
        for k, v in series.items():
            row[k.split(".", 1)[1]] = v.get(s)
        out.append(row)
    return out


def components(req: Requirements) -> Components:
    """Read the store: every serving run with a sweep, every injection guard, every finished run."""
    from llmarch_lab import paths

    if not tracking.require_store(write=False):
        raise LabError(f"no tracking store at {paths.tracking_uri()}: run the suites the requirements "
                       "read first (e.g. llmarch-lab run experiments/system_inputs.yaml)")
    runs = [r for r in tracking.search_many(req.experiments) if r["tags"].get("llmarch.parent") != "true"]
    if req.experiments is not None and "system" not in req.experiments:  # quality measured through the stack
        runs += tracking.search_many(["system"], tags={"llmarch.name": "stack-quality"})
    c = tracking.client(paths.tracking_uri())
    exps = {e.name: e.experiment_id for e in c.search_experiments(max_results=10000)}
    serving, seen = [], set()
    for r in runs:  # newest first: the newest finished run of each (experiment, run name)
        p, t = r["params"], r["tags"]
        if t.get("lab") != "serving" or p.get("engine") == "external":
            continue
        if p.get("profile", "concurrent") not in ("concurrent", "synchronous"):
            continue  # open-loop levels are rates: sized the same way, but left out until a run needs it
        key = (r["experiment"], t.get("llmarch.name", r["name"]))
        if key in seen:
            continue
        seen.add(key)
        levels = [lv for lv in _sweep(r["run_id"]) if (lv.get("req_per_s") or 0) > 0]
        if levels:
            try:
                reqs = tracking.load_table(r["run_id"], "requests")
            except LabError:
                reqs = None
            serving.append(Serving(r["run_id"], r["experiment"], key[1], p.get("engine", ""), p.get("model", ""),
                                   p.get("profile", "concurrent"), p, levels, t.get("gpu", "none") or "none", reqs))
    return Components(serving, guards(runs), runs, exps)


def guards(runs: list[dict]) -> list[Guard]:
    """The injection guards with both a quality run (outside sources preferred) and a latency run
    (gateway preferred, else the in-process stack), plus Guard("none")."""
    found: dict[str, Guard] = {}
    for r in runs:  # newest first
        p, m = r["params"], r["metrics"]
        if r["tags"].get("lab") != "guardrails":
            continue
        part = p.get("part")
        if part == "outside" and p.get("outside_check") == "injection" and "quality.outside_test_f1" in m:
            # Scored on other sources' attacks and benign prompts (the held-out test sources): what
            # the guard does to traffic it was not tuned on. Preferred to the training file's CV.
            g = found.setdefault(p.get("outside_detector", "?"), Guard(p.get("outside_detector", "?")))
            if g.f1_run is None or g.f1_run["params"].get("part") != "outside":
                g.f1_run, g.fpr = r, float(m.get("errors.outside_test_benign_fpr", 0.0))
        elif part == "injection" and "quality.injection_f1" in m:
            g = found.setdefault(p.get("detector", "?"), Guard(p.get("detector", "?")))
            if g.f1_run is None:
                g.f1_run, g.fpr = r, float(m.get("errors.injection_fpr", 0.0))
        elif part in ("gateway", "stack"):
            g = found.setdefault(p.get("stack_detector", "?"), Guard(p.get("stack_detector", "?")))
            if part == "gateway" and "latency.gateway_added_ttft_ms_p50" in m and g.latency_kind != "gateway (measured)":
                g.latency_run, g.latency_kind = r, "gateway (measured)"
                g.added_ms = {"p50": m["latency.gateway_added_ttft_ms_p50"], "p99": m["latency.gateway_added_ttft_ms_p99"]}
            elif part == "stack" and "latency.guard_ms_p50" in m and g.latency_run is None:
                g.latency_run, g.latency_kind = r, "stack (composed)"
                g.added_ms = {"p50": m["latency.guard_ms_p50"], "p99": m["latency.guard_ms_p99"]}
    # A guard is a candidate only when both its quality and its latency were measured.
    return [Guard("none")] + [g for g in found.values() if g.f1_run is not None and g.latency_run is not None]


def model_label(model: str) -> str:
    """A model spec as people read it: the alias, or a file's name without .gguf (not Path.stem:
    'qwen2.5-coder-0.5b-instruct' has no suffix to strip)."""
    return Path(model).name.removesuffix(".gguf")

