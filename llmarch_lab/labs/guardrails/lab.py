"""Guardrails lab: which guard stack goes in front of and behind the LLM, what it catches, what
it wrongly blocks, and what it costs in latency.

    llmarch-lab run experiments/guardrails.yaml           # every part (resumable)
    llmarch-lab run guardrails --only injection           # one part
    llmarch-lab guard scan --check pii --in F --out O     # any file, one check

One run measures one `part`:
    pii         Presidio span-level P / R / F2 (presidio-evaluator) of one configuration
                (engine no_op | spacy x default | tuned, threshold) on the seeded TEST split;
                settings were chosen on the TRAIN split (pii.py says how)
    injection   one detector (rules, minilm-lr, nanoguard, cascade, ensemble...) on the deepset
                training file: cross-validated (out-of-fold) P / R / F1 / AUC / benign FPR for
                trained detectors, whole-file numbers for the untrained ones; latency per text on
                one CPU thread
    toxicity    alt-profanity-check: P / R / F1 / AUC on a labeled file you give (toxicity_file);
                without one, its false-positive rate on benign PubMedQA questions and its latency
    validation  structured output on llama.cpp + SmolLM2: plain, validate + re-ask, constrained
                decoding (JSON schema); plus the groundedness check of RAG answers
    stack       the whole input + output guard (stack.py) per request on one thread, with the
                hash-chained audit log and the escalation queue as artifacts
    gateway     the guard inside a LiteLLM proxy in front of llama.cpp, attacked by garak; benign
                false blocks and the added TTFT
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from llmarch_lab import LabError, paths
from llmarch_lab.assets import datasets
from llmarch_lab.common import stats
from llmarch_lab.config import LabParams
from llmarch_lab.results import Result

PARTS = ("pii", "injection", "toxicity", "validation", "stack", "gateway")
PII_CONFIGS = ("no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned")
INJECTION_DETECTORS = ("rules", "minilm-lr", "nanoguard", "cascade", "ensemble-fast", "ensemble")


class GuardrailsParams(LabParams):
    lab = "guardrails"
    key_metrics = ("quality.pii_f2", "quality.injection_f1", "errors.injection_fpr", "latency.guard_ms_p95",
                   "quality.constrained_valid_rate", "quality.attack_success_rate_guarded")

    part: Literal["pii", "injection", "toxicity", "validation", "stack", "gateway"] = Field(
        "injection", description="What this run measures (see the module docstring).")
    threads: int = Field(1, ge=1, le=64, description="CPU threads for models (the latency goal is per request on one thread).")
    # pii
    pii_config: Literal["no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned"] = Field(
        "spacy/tuned", description="Presidio engine/configuration (pii.configs()).")
    pii_threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="Score threshold; None = the configuration's own (chosen on train).")
    pii_test_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Share of synth_dataset_v2 held out as the test split (seeded).")
    pii_limit: int = Field(0, ge=0, description="Score at most this many test records (0 = all).")
    # injection
    detector: Literal["rules", "minilm-lr", "nanoguard", "cascade", "ensemble-fast", "ensemble"] = Field(
        "minilm-lr", description="Injection detector (injection.DETECTORS).")
    cv_folds: int = Field(5, ge=2, le=20, description="Stratified folds for trained detectors (out-of-fold numbers).")
    latency_n: int = Field(150, ge=0, le=5000, description="Texts timed one at a time (0 = no latency).")
    # toxicity
    toxicity_file: str = Field("", description="Labeled file (.csv/.tsv/.parquet/.jsonl with text, label) to score; '' = benign FPR only.")
    benign_n: int = Field(200, ge=10, le=1000, description="Benign PubMedQA questions for false-positive rates and stack latency.")
    # validation
    validation_items: int = Field(40, ge=3, le=1000, description="PubMedQA items (stratified by decision) per strategy.")
    max_retries: int = Field(2, ge=0, le=10, description="Re-asks at most (validate + re-ask).")
    groundedness_items: int = Field(200, ge=10, le=1000, description="PubMedQA items for the groundedness check (half choose the threshold).")
    # stack
    stack_detector: Literal["rules", "minilm-lr", "nanoguard", "cascade", "ensemble-fast", "ensemble"] = Field(
        "minilm-lr", description="The stack's injection check (stack / gateway parts).")
    stack_pii_config: Literal["no_op/default", "no_op/tuned", "spacy/default", "spacy/tuned"] = Field(
        "spacy/tuned", description="The stack's PII checks (input, output) and the audit log's redaction.")
    stack_requests: int = Field(200, ge=10, le=5000, description="Requests timed through the whole stack.")
    # gateway
    garak_cap: int = Field(3, ge=1, le=100, description="Prompts per garak probe (sampled by garak's seed).")
    gateway_benign: int = Field(50, ge=5, le=1000, description="Benign PubMedQA questions through the gateway.")
    gateway_ttft_requests: int = Field(20, ge=5, le=1000, description="Streaming requests timed, bare vs guarded.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.toxicity_file and self.part != "toxicity":
            raise ValueError("toxicity_file: only for part=toxicity")
        return self


def run(p: GuardrailsParams) -> Result:
    from llmarch_lab.labs.guardrails.detectors import single_thread

    res = Result(tags={"guardrails.part": p.part})
    with single_thread(p.threads):
        {"pii": _pii, "injection": _injection, "toxicity": _toxicity, "validation": _validation,
         "stack": _stack, "gateway": _gateway}[p.part](p, res)
    return res


# ---------------------------------------------------------------------------------------- parts

def _pii(p: GuardrailsParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import pii, plots

    cfg = pii.configs()[p.pii_config]
    if p.pii_threshold is not None:
        cfg = cfg.with_threshold(p.pii_threshold)
    _, test = pii.split(datasets.pii_synth(), seed=p.seed, test_fraction=p.pii_test_fraction)
    if p.pii_limit:
        test = test[: p.pii_limit]
    ev = pii.evaluate(test, cfg)
    res.metrics.update(ev.metrics())
    res.tags.update({"guardrails.pii_config": p.pii_config, "guardrails.pii_threshold": f"{cfg.threshold:g}",
                     "guardrails.pii_test_records": str(len(test))})
    res.tables["pii_per_entity"] = ev.per_entity
    res.tables["pii_predictions"] = ev.predictions
    res.texts["pii_config.json"] = json.dumps(cfg.describe(), indent=1)
    res.figures["pii_per_entity"] = plots.per_entity_bars(ev.per_entity, f"PII {p.pii_config} @ {cfg.threshold:g}")


def _injection(p: GuardrailsParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import injection, plots

    df, sha = injection.training_file()
    out = injection.cross_validate(p.detector, df, folds=p.cv_folds, seed=p.seed, latency_n=p.latency_n)
    m = out["metrics"]
    for k in ("precision", "recall", "f1"):
        res.add(f"quality.injection_{k}", m[k])
    res.add("quality.injection_auc", m["roc_auc"])
    res.add("errors.injection_fpr", m["fpr"])
    if "latency_ms" in out:
        res.metrics.update(stats.percentiles(out["latency_ms"], "latency.injection_ms"))
    if "frac_nanoguard" in m:
        res.add("count.injection_escalated_frac", m["frac_nanoguard"])
    res.tags.update({"guardrails.detector": p.detector, "guardrails.numbers":
                     f"{p.cv_folds}-fold out-of-fold" if out["cross_validated"] else "whole file (untrained detector)",
                     "guardrails.training_sha256": sha, "guardrails.threshold": f"{m['threshold_mean']:.4g}"})
    res.tables["injection_oof"] = out["oof"]
    if out["folds"]:
        import pandas as pd

        res.tables["injection_folds"] = pd.DataFrame(out["folds"])
    res.figures["injection_pr"] = plots.pr_curve(out["pr_curve"], p.detector)
    res.figures["injection_confusion"] = plots.confusion(out["oof"]["label"], out["oof"]["pred"], p.detector)


def _benign_questions(n: int, seed: int) -> list[str]:
    pq = datasets.pubmedqa().sample(frac=1.0, random_state=seed)
    return pq["question"].astype(str).tolist()[:n]


def _toxicity(p: GuardrailsParams, res: Result) -> None:
    from llmarch_lab.labs.guardrails import detectors, plots, toxicity

    det = toxicity.build("profanity-check")
    if p.toxicity_file:
        path = Path(p.toxicity_file)
        path = path if path.is_absolute() else paths.home() / path
        ev = toxicity.evaluate(path, latency_n=p.latency_n)
        m = ev.metrics
        for k in ("precision", "recall", "f1"):
            res.add(f"quality.toxicity_{k}", m[k])
        res.add("quality.toxicity_auc", m["roc_auc"])
        res.add("errors.toxicity_fpr", m["fpr"])
        res.tables["toxicity_predictions"] = ev.predictions
        res.figures["toxicity_pr"] = plots.pr_curve(ev.pr_curve, "profanity-check")
        res.tags["guardrails.toxicity_file"] = str(p.toxicity_file)
    benign = _benign_questions(p.benign_n, p.seed)
    scores = det.score(benign)
    res.add("errors.toxicity_benign_fpr", float((scores >= det.threshold).mean()))
    lat = detectors.measure_latency(det, benign[: max(1, p.latency_n)] if p.latency_n else benign[:50])
    res.metrics.update(stats.percentiles(lat, "latency.toxicity_ms"))
    import pandas as pd

    res.tables["toxicity_benign"] = pd.DataFrame({"text": benign, "score": scores})


def _validation(p: GuardrailsParams, res: Result) -> None:
    import tempfile

    from llmarch_lab.assets import models
    from llmarch_lab.labs.guardrails import rules, validation
    from llmarch_lab.llm import engines

    items = validation.sample_items(p.validation_items, seed=p.seed)
    with tempfile.TemporaryDirectory(prefix="llmarch-guard-") as d:
        log = Path(d) / "llamacpp.log"
        try:
            with engines.launch("llamacpp", models.SMOLLM2, log_path=log) as eng:
                summary, per_item = validation.evaluate_strategies(eng.endpoint(), items, max_retries=p.max_retries)
        finally:
            if log.exists():
                res.texts["llamacpp.log"] = log.read_text(errors="replace")[-20000:]
    res.metrics.update(validation.mlflow_metrics(summary))
    res.tables["validation_summary"] = summary
    res.tables["validation_items"] = per_item
    g = rules.evaluate_groundedness(n_items=p.groundedness_items, seed=p.seed)
    res.metrics.update(rules.groundedness_metrics(g))
    res.tables["groundedness"] = g
    res.tags["guardrails.validation_model"] = models.SMOLLM2


def _stack(p: GuardrailsParams, res: Result) -> None:
    """The whole guard on real texts, one request at a time: a mix of benign PubMedQA questions
    and training-file prompts as inputs, PubMedQA expert answers as the outputs (the LLM's part
    is the serving lab's; this is what the guard adds per request)."""
    import pandas as pd

    from llmarch_lab.labs.guardrails import audit, injection, pii, policy, stack

    cfg = stack.default_config(injection_detector=p.stack_detector, pii_config=p.stack_pii_config)
    tmp = paths.cache_dir() / f"guardrails-audit-{int(time.time() * 1000)}.jsonl"
    pii_cfg = pii.configs()[p.stack_pii_config]
    log = audit.AuditLog(tmp, redactor=lambda t: pii.redact(t, pii_cfg))
    guard = policy.Guard(cfg, audit=log)
    pq = datasets.pubmedqa().sample(frac=1.0, random_state=p.seed)
    inj, _ = injection.training_file()
    inj = inj.sample(frac=1.0, random_state=p.seed)
    n = p.stack_requests
    inputs = (pq["question"].astype(str).tolist()[: n // 2] + inj["text"].astype(str).tolist()[: n - n // 2])
    outputs = (pq["long_answer"].astype(str).tolist() * 3)[:n]
    guard.check_input("warm-up request: my name is John Smith")
    guard.check_output("warm-up answer.")
    rows = []
    for i, (q, a) in enumerate(zip(inputs, outputs)):
        t0 = time.perf_counter()
        din = guard.check_input(q)
        dout = guard.check_output(a) if not din.blocked else None
        total = (time.perf_counter() - t0) * 1000  # with the audit log's redaction and fsync'd appends
        checks = din.latency_ms + (dout.latency_ms if dout else 0.0)
        rows.append({"i": i, "source": "pubmedqa" if i < n // 2 else "prompt_injections", "input_action": din.action,
                     "output_action": dout.action if dout else "", "input_ms": din.latency_ms,
                     "output_ms": dout.latency_ms if dout else 0.0, "checks_ms": checks, "with_audit_ms": total,
                     **{f"{r.name}_ms": r.latency_ms for r in din.checks + (dout.checks if dout else [])}})
    df = pd.DataFrame(rows)
    res.metrics.update(stats.percentiles(df["checks_ms"], "latency.guard_ms"))
    res.metrics.update(stats.percentiles(df["with_audit_ms"], "latency.guard_with_audit_ms"))
    res.metrics.update(stats.percentiles(df["input_ms"], "latency.guard_input_ms"))
    full = df[df["output_action"] != ""]  # requests that reached the output checks
    if len(full):
        res.metrics.update(stats.percentiles(full["checks_ms"], "latency.guard_full_ms"))
    res.add("count.stack_flagged_frac", float((df["input_action"] != "allow").mean()))
    rep = audit.verify(tmp)
    if not rep.ok:
        raise LabError(f"audit log {tmp}: {rep.line(tmp)}")
    res.add("count.audit_records", rep.n_records)
    res.tables["stack_requests"] = df
    res.tables["escalations"] = guard.escalations.frame()
    res.texts["audit.jsonl"] = tmp.read_text()
    res.texts["guard_config.json"] = cfg.model_dump_json(indent=1)
    res.tags.update({"guardrails.stack_detector": p.stack_detector, "guardrails.stack_pii_config": p.stack_pii_config})
    tmp.unlink(missing_ok=True)


def _gateway(p: GuardrailsParams, res: Result) -> None:
    import tempfile

    from llmarch_lab.labs.guardrails import garak_scan, stack

    cfg = stack.default_config(injection_detector=p.stack_detector, pii_config=p.stack_pii_config)
    with tempfile.TemporaryDirectory(prefix="llmarch-garak-") as d:
        out = garak_scan.study(d, cap=p.garak_cap, n_benign=p.gateway_benign, n_ttft=p.gateway_ttft_requests,
                               guard_config=cfg)
        res.add("quality.attack_success_rate_bare", out["asr_bare"])
        res.add("quality.attack_success_rate_guarded", out["asr_guarded"])
        res.add("errors.benign_false_block_rate", out["false_block_rate"])
        guarded = next(k for k in out["ttft"] if k.startswith("guarded_w") and k != "guarded_w0")
        res.add("latency.gateway_added_ttft_ms_p50", out["ttft"][guarded]["added_p50"])
        res.add("latency.gateway_added_ttft_ms_p99", out["ttft"][guarded]["added_p99"])
        res.add("latency.bare_ttft_ms_p50", out["ttft"]["bare"]["p50"])
        res.tables["garak"] = out["garak"]
        import pandas as pd

        res.tables["gateway_ttft"] = pd.DataFrame([{"target": k, **v} for k, v in out["ttft"].items()])
        res.tables["gateway_benign"] = pd.DataFrame(out["benign_rows"])
        res.tags["guardrails.garak_probes"] = ",".join(out["probes"])
