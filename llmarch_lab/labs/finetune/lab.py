"""Fine-tuning lab: does LoRA / QLoRA pay on PubMedQA, and with which adapter settings?

    llmarch-lab run experiments/finetune.yaml          # CPU sweep: r, lr, LoRA vs QLoRA
    python benchmarks/finetune.py                      # the same sweep + comparison table
    python -m llmarch_lab.labs.finetune method=lora    # one run from the command line
    # or interactively: notebooks/20_finetune.ipynb

One run: PubMedQA labeled (official 500 test, the other 500 split train/dev stratified), the
quality gate (data.py; leakage fails the run), then TRL `SFTTrainer` with a
PEFT `LoraConfig` on a prompt-completion dataset (loss on the completion only). QLoRA = the same
on a base loaded in bitsandbytes nf4. Train loss and dev eval loss go to `on_step` every few
steps (the notebook passes `lab_run.log_metrics`: a live curve in MLflow). At every evaluation the
dev questions are also scored by their label log-probs, and the checkpoint with the best dev
macro-F1 is restored at the end (`select_on`; optional early stopping). Evaluation scores
yes/no/maybe by the next-token log-probabilities of the three label words after the prompt,
for the majority label of train, the base model zero-shot and the tuned model: accuracy and
macro-F1 on the test set, dev metrics for choosing hyperparameters.
The three label log-probs carry a prior (a base model that says "yes" to everything, an adapter
that learned the 55% 'yes' share), so each model also gets a per-label bias fitted on dev to
maximise macro-F1 (`calibrate=dev_bias`, the default; test rows never enter the fit). Raw
(`quality.raw_*`) and calibrated (`quality.calibrated_*`) metrics are both logged for every
model; `quality.accuracy` / `quality.macro_f1` are the `calibrate` choice. Dev metrics of the
calibrated models are cross-fitted (5 folds) so that they are not optimistic.
Train rows can be class-balanced by oversampling no/maybe (`balance`), and the abstract keeps its
tail (the results) when cut to `context_tokens` (`context_side`).
Export: the adapter folder and the merged model (`merge_and_unload`, safetensors).

Cost on 2 quiet CPU cores (SmolLM2-135M, fp32, the defaults: all-linear r=16, 4 x ~210 tokens):
~6 s per LoRA step, ~0.3 s per scored question; one epoch of the 400 train questions at batch 4
is 100 steps; a default run (200 steps, 1200 scored questions + 100 per checkpoint) ~45 min.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmarch_lab import LabError, paths
from llmarch_lab.assets import datasets, models
from llmarch_lab.common.entry import key_values, one_line_errors
from llmarch_lab.labs.finetune import data as fd
from llmarch_lab.labs.finetune import scoring, train
from llmarch_lab.labs.finetune.params import FinetuneParams
from llmarch_lab.results import Result


@dataclass
class FinetuneResult(Result):
    """A Result plus exported folders (name -> path), for `lab_run.log_artifact(path, name)`."""

    artifacts: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ run

def run(p: FinetuneParams, on_step: Callable[[dict, int], None] | None = None) -> FinetuneResult:
    res = FinetuneResult(tags={"model": p.model, "method": p.method})
    splits, test, rows = _data(p, res)
    preds, dev_preds, peft_model, tok = _scored(p, res, splits, test, rows, on_step)
    preds = _calibrated_metrics(p, res, preds, dev_preds)
    _tables(res, test, preds, dev_preds)
    if p.export != "none":
        out = Path(p.output_dir) if p.output_dir else Path(tempfile.mkdtemp(prefix="run-", dir=_export_root()))
        res.artifacts = train.export(p, peft_model, tok, out)
    return res


def _data(p: FinetuneParams, res: FinetuneResult):
    """Splits, the quality gate (leakage fails the run), prompt rows for train/dev/test."""
    tok = models.load_tokenizer(p.model)
    splits = fd.split(datasets.pubmedqa(), p.dev_fraction, p.seed)
    gate = fd.quality_gate(splits, tok, p.context_tokens, p.max_length, p.long_answer, p.near_dup_threshold,
                           p.context_side)
    res.tables["quality_gate"], res.figures["token_lengths"] = gate.table, gate.figure
    for k, v in gate.metrics.items():
        res.add(k, v)
    test = fd.sample(splits.test, p.test_items, p.seed)
    dev = fd.sample(splits.dev, p.dev_items, p.seed)
    rows = {name: fd.to_rows(df, tok, p.context_tokens, p.long_answer, p.context_side)
            for name, df in (("train", splits.train), ("dev", dev), ("test", test))}
    if p.balance == "oversample":
        rows["train"] = fd.oversample(rows["train"], p.seed)
    res.tags.update({"n_train": str(len(rows["train"])), "n_dev": str(len(rows["dev"])),
                     "n_test": str(len(rows["test"]))})

    return splits, test, rows


def _scored(p: FinetuneParams, res: FinetuneResult, splits, test, rows, on_step):
    """Majority, zero-shot and tuned predictions on test and dev; training in between."""
    import pandas as pd

    from llmarch_lab.common.memory import PeakRSS, weights_mb

    preds, dev_preds = {}, {}
    majority = splits.train.decision.mode()[0]  # majority label of train, never of test
    preds["majority"] = test.assign(gold=test.decision, pred=majority)[["id", "gold", "pred"]]
    (model, tok), load_s = models.timed(train.load_base, p)
    res.add("latency.load_s", load_s)
    res.add("memory.base_weights_mb", weights_mb(model))  # counts bnb scales too
    if p.zero_shot:
        preds["zero_shot"] = scoring.score(model, tok, rows["test"], p.eval_batch_size, "zero-shot test")
        dev_preds["zero_shot"] = scoring.score(model, tok, rows["dev"], p.eval_batch_size, "zero-shot dev")

    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as rss:
        peft_model, history, n_tok, train_s, best_step = train.train(p, model, tok, rows["train"], rows["dev"], Path(tmp), on_step)
    res.add("memory.peak_rss_mb", rss.mb)
    res.add("latency.train_s", train_s)
    res.add("throughput.train_tok_per_s", n_tok / max(train_s, 1e-9))
    hist = pd.DataFrame(history).groupby("step", as_index=False).first() if history else pd.DataFrame()
    res.tables["train_log"] = hist
    if len(hist):
        res.figures["loss_curve"] = train.loss_plot(hist, best_step)
        if "quality.train_loss" in hist:
            res.add("quality.final_train_loss", hist["quality.train_loss"].dropna().iloc[-1])
        if "quality.eval_loss" in hist:
            res.add("quality.best_eval_loss", hist["quality.eval_loss"].min())
    res.tags["steps_done"] = str(int(hist.step.max()) if len(hist) else 0)
    if best_step is not None:  # the checkpoint the tuned model was restored to (select_on)
        res.add("count.best_step", best_step)

    preds["tuned"] = scoring.score(peft_model, tok, rows["test"], p.eval_batch_size, "tuned test")
    dev_preds["tuned"] = scoring.score(peft_model, tok, rows["dev"], p.eval_batch_size, "tuned dev")
    return preds, dev_preds, peft_model, tok


def _calibrated_metrics(p: FinetuneParams, res: FinetuneResult, preds: dict, dev_preds: dict) -> dict:
    """Raw and dev-calibrated metrics of every scored model; returns the headline predictions."""
    import pandas as pd

    # Raw = argmax of the label log-probs; calibrated = plus a bias fitted on dev for that model
    # (test rows never enter the fit). `calibrate` picks which one is the headline metric.
    calib = []
    for name, dev_df in dev_preds.items():
        bias = scoring.fit_bias(dev_df)
        calib.append({"model": name, **{f"bias_{w}": b for w, b in zip(fd.LABELS, bias)}})
        raw, cal = preds[name], scoring.apply_bias(preds[name], bias)
        prefix = "" if name == "tuned" else f"{name}_"
        for kind, df in (("raw", raw), ("calibrated", cal)):
            for k, v in scoring.classification_metrics(df.gold, df.pred).items():
                res.add(f"quality.{prefix}{kind}_{k}", v)
        dev_sets = {"raw": dev_df, "calibrated": scoring.cross_fitted(dev_df, seed=p.seed)}
        for kind, df in dev_sets.items():
            for k, v in scoring.classification_metrics(df.gold, df.pred).items():
                res.add(f"quality.{prefix}dev_{kind}_{k}", v)
        if p.calibrate == "dev_bias":
            preds[name], chosen = cal, "calibrated"
        else:
            preds[name], chosen = raw.assign(raw_pred=raw.pred), "raw"
        for k in ("accuracy", "macro_f1"):
            res.add(f"quality.{prefix}{k}", res.metrics[f"quality.{prefix}{chosen}_{k}"])
            res.add(f"quality.{prefix}dev_{k}", res.metrics[f"quality.{prefix}dev_{chosen}_{k}"])
    for name, df in preds.items():
        if name == "majority":
            for k, v in scoring.classification_metrics(df.gold, df.pred).items():
                res.add(f"quality.majority_{k}", v)
    res.tables["calibration"] = pd.DataFrame(calib)
    res.tags["calibrate"] = p.calibrate
    return preds


def _tables(res: FinetuneResult, test, preds: dict, dev_preds: dict) -> None:
    """Predictions side by side, the confusion plot, and the paired-bootstrap significance."""
    import pandas as pd

    res.tables["dev_predictions"] = pd.concat([df.assign(model=name) for name, df in dev_preds.items()],
                                              ignore_index=True)
    res.figures["confusion"] = scoring.confusion_plot(preds)
    table = test[["id", "question", "decision"]].rename(columns={"decision": "gold"})
    for name, df in preds.items():
        cols = {c: f"{name}_{c}" for c in df.columns if c not in ("id", "gold")}
        table = table.merge(df.drop(columns="gold").rename(columns=cols), on="id")
    res.tables["predictions"] = table
    if len(table) >= 10:  # a bootstrap over fewer questions says nothing
        res.tables["significance"] = sig = scoring.paired_bootstrap(table)
        for r in sig[sig.kind == "headline"].itertuples():  # e.g. quality.accuracy_gain_vs_majority_ci95_low
            base = f"quality.{r.metric}_gain_vs_{r.comparison.split(' - ')[1]}"
            res.add(f"{base}_ci95_low", r.ci95_low)
            res.add(f"{base}_ci95_high", r.ci95_high)


def _export_root() -> Path:
    root = paths.cache_dir() / "finetune"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ------------------------------------------------------------------------------ script entry

@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """`python -m llmarch_lab.labs.finetune key=value ...` (also under `accelerate launch`): one run,
    logged to MLflow by rank 0. Values are YAML scalars/lists: r=32 target_modules='[q_proj]'."""
    import os
    import sys

    from llmarch_lab import config
    from llmarch_lab.store import tracking

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["score-endpoint"]:
        return _score_endpoint_main(args[1:])
    values = key_values(args, ", ".join(FinetuneParams.model_fields))
    rank = int(os.environ.get("RANK", "0"))
    if values.get("device") == "cuda" and "LOCAL_RANK" in os.environ:
        values["device"] = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per launched process
    p = config.validate_params(FinetuneParams, values, "command line")
    lab_run = tracking.start(p, notebook="finetune-cli") if rank == 0 else None
    result = run(p, on_step=lab_run.log_metrics if lab_run else None)
    if lab_run:
        lab_run.log_result(result)
        for name, folder in result.artifacts.items():
            lab_run.log_artifact(folder, name)
        lab_run.close()
        print({k: round(v, 4) for k, v in result.metrics.items()})
    return 0


@one_line_errors
def _score_endpoint_main(args: list[str]) -> int:
    """`score-endpoint base_url=... served_model=... [api_key_env=...] [model=...] [test_items=...]`."""


    from llmarch_lab import config
    from llmarch_lab.labs.finetune import endpoint_eval
    from llmarch_lab.llm.endpoint import Endpoint
    from llmarch_lab.store import tracking

    values = key_values(args)
    ep_fields = {k: values.pop(k) for k in ("base_url", "served_model", "api_key_env") if k in values}
    if "base_url" not in ep_fields:
        raise LabError("score-endpoint: base_url=... is required (an OpenAI-compatible URL ending in /v1)")
    p = config.validate_params(FinetuneParams, values, "command line")
    ep = Endpoint(str(ep_fields["base_url"]), str(ep_fields.get("served_model", p.model)),
                  str(ep_fields.get("api_key_env", "")))
    result = endpoint_eval.evaluate(ep, p)
    with tracking.start(p, notebook="finetune-score-endpoint") as lab_run:
        lab_run.log_result(result)
    print({k: round(v, 4) for k, v in result.metrics.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
