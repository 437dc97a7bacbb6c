"""Fine-tuning lab: does LoRA / QLoRA pay on PubMedQA, and with which adapter settings?

    llmarch-lab run experiments/finetune.yaml          # CPU sweep: r, lr, LoRA vs QLoRA
    python benchmarks/finetune.py                      # the same sweep + comparison table
    # or interactively: notebooks/20_finetune.ipynb

One run: PubMedQA labeled (official 500 test, the other 500 split train/dev stratified), the
quality gate (llmarch_lab.finetune_data; leakage fails the run), then TRL `SFTTrainer` with a
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field, model_validator

from llmarch_lab import LabError, datasets, models, paths
from llmarch_lab import finetune_data as fd
from llmarch_lab.config import LabParams
from llmarch_lab.results import Result


class FinetuneParams(LabParams):
    lab = "finetune"
    key_metrics = ("quality.accuracy", "quality.macro_f1", "quality.zero_shot_macro_f1",
                   "quality.dev_macro_f1", "throughput.train_tok_per_s", "memory.peak_rss_mb")

    # model
    model: str = Field(models.SMOLLM2, description="Base LLM spec: alias, Hugging Face id or local path.")
    device: str = Field("cpu", description="cpu, cuda, cuda:N or auto.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Weights / compute dtype (bf16 on GPU); also the QLoRA compute dtype.")
    method: Literal["lora", "qlora"] = Field("lora", description="lora: adapter on the full-precision base; qlora: base loaded in bitsandbytes nf4.")
    double_quant: bool = Field(False, description="QLoRA: also quantize the quantization constants.")
    # adapter
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(["all-linear"], min_length=1, description="Module names that get adapters ('all-linear' alone = every linear layer).")
    # data
    context_tokens: int = Field(128, ge=16, le=8192, description="Abstract cut to this many tokens in the prompt.")
    context_side: Literal["head", "tail"] = Field("tail", description="Which end of the abstract the cut keeps: head (background first) or tail (results, which carry the answer).")
    long_answer: bool = Field(False, description="Target = decision followed by the long answer (else the decision word only).")
    dev_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the 500 non-test questions held out as dev (stratified).")
    near_dup_threshold: float = Field(90.0, gt=0, le=100, description="rapidfuzz ratio (0-100) at which two questions count as near-duplicates.")
    balance: Literal["none", "oversample"] = Field("none", description="Train label balance: none (the natural 55/34/11 shares), or oversample no/maybe up to the 'yes' count.")
    # training
    max_steps: int = Field(200, ge=0, description="Optimizer steps; 0 = train for `epochs`.")
    epochs: float = Field(1.0, gt=0, description="Epochs over train when max_steps = 0.")
    lr: float = Field(3e-4, gt=0, lt=1, description="Peak learning rate (linear decay, warmup_steps).")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    batch_size: int = Field(4, ge=1, description="Examples per device step.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps (effective batch = batch_size x grad_accum).")
    max_length: int = Field(256, ge=32, description="Training sequences cut to this many tokens.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations (less memory, slower).")
    log_every: int = Field(5, ge=1, description="Log train loss every N steps.")
    eval_every: int = Field(25, ge=1, description="Every N steps: dev eval loss, dev label scoring and a checkpoint.")
    select_on: Literal["dev_macro_f1", "eval_loss"] = Field("dev_macro_f1", description="Which dev number picks the checkpoint restored at the end (and drives early stopping): dev_macro_f1 = raw macro-F1 of the label log-probs on dev; eval_loss = dev loss on the completion.")
    early_stopping_patience: int = Field(0, ge=0, description="Stop after N evals without improvement of `select_on`; 0 = off (the best checkpoint is still restored).")
    # evaluation
    test_items: int = Field(0, ge=0, description="Test questions scored (stratified random subset); 0 = all 500.")
    dev_items: int = Field(0, ge=0, description="Dev questions for eval loss, dev metrics and the calibration fit (stratified); 0 = all 100.")
    zero_shot: bool = Field(True, description="Also score the base model before training.")
    calibrate: Literal["none", "dev_bias"] = Field("dev_bias", description="Headline predictions: none = raw argmax of the label log-probs; dev_bias = plus a per-label bias fitted on dev (max macro-F1) for each model. Raw and calibrated metrics are both logged.")
    eval_batch_size: int = Field(16, ge=1, description="Prompts per forward pass when scoring.")
    # export
    export: Literal["none", "adapter", "merged"] = Field("merged", description="none; adapter: the adapter folder; merged: adapter + merge_and_unload safetensors folder.")
    output_dir: str = Field("", description="Where exports go; empty = a new folder under the cache dir.")

    @model_validator(mode="after")
    def _check(self):
        if self.method == "qlora" and self.device == "mps":
            raise ValueError("method=qlora: bitsandbytes 4-bit runs on cpu or cuda, not mps")
        if self.context_tokens >= self.max_length:
            raise ValueError(f"context_tokens ({self.context_tokens}) must be below max_length ({self.max_length})")
        return self


@dataclass
class FinetuneResult(Result):
    """A Result plus exported folders (name -> path), for `lab_run.log_artifact(path, name)`."""

    artifacts: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- scoring

def label_token_ids(tok) -> list[int]:
    """First token of each label word as the assistant turn renders it (what training teaches)."""
    ids = []
    for w in fd.LABELS:
        msgs = [{"role": "user", "content": "q"}]
        pre = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": w}], tokenize=False)
        if not full.startswith(pre):
            raise LabError(f"tokenizer chat template: the assistant turn does not extend the prompt for {w!r}")
        ids.append(tok(full[len(pre):], add_special_tokens=False).input_ids[0])
    if len(set(ids)) != len(ids):
        raise LabError(f"tokenizer: the label words {fd.LABELS} share a first token; cannot score them apart")
    return ids


def score(model, tok, rows: list[dict], batch_size: int = 8, desc: str = "scoring"):
    """Per-row log-probs of yes/no/maybe as the next token after the prompt, and the argmax."""
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    label_ids = label_token_ids(tok)
    side, tok.padding_side = tok.padding_side, "left"  # last position = end of every prompt
    out = []
    try:
        model.eval()
        for i in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False):
            batch = rows[i:i + batch_size]
            enc = tok([fd.prompt_text(tok, r) for r in batch], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                # logits_to_keep=1: only the last position goes through the LM head (vocab 49k)
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)[:, label_ids].cpu()
            for r, lp in zip(batch, logp):
                out.append({"id": r["id"], "gold": r["decision"], "pred": fd.LABELS[int(lp.argmax())],
                            **{f"logp_{w}": round(float(v), 4) for w, v in zip(fd.LABELS, lp)}})
    finally:
        tok.padding_side = side
    return pd.DataFrame(out)


def classification_metrics(gold, pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": accuracy_score(gold, pred),
            "macro_f1": f1_score(gold, pred, labels=list(fd.LABELS), average="macro", zero_division=0)}


def fit_bias(dev, step: float = 0.1, span: float = 8.0) -> tuple[float, float, float]:
    """Per-label log-prob offsets (yes fixed at 0) that maximise macro-F1 on scored rows (ties:
    accuracy, then the smallest offsets). Fitted on dev only; a grid over two numbers, because
    macro-F1 is not differentiable and 161^2 evaluations take well under a second.
    Like contextual calibration (Zhao et al. 2021) it removes a label prior the scoring carries,
    but it is fitted on labelled dev rows instead of a content-free prompt."""
    import numpy as np

    lp = dev[[f"logp_{w}" for w in fd.LABELS]].to_numpy(dtype=float)
    gold = dev.gold.map({w: i for i, w in enumerate(fd.LABELS)}).to_numpy()
    grid = np.round(np.arange(-span, span + step / 2, step), 6)
    best, best_key = (0.0, 0.0, 0.0), None
    for b1 in grid:  # vectorised over the 'maybe' offset
        shifted = lp[None, :, :] + np.stack([np.zeros_like(grid), np.full_like(grid, b1), grid], 1)[:, None, :]
        pred = shifted.argmax(2)  # G x n
        acc, f1 = _acc_f1(gold[None, :], pred)
        for k in range(len(grid)):
            key = (round(f1[k], 9), round(acc[k], 9), -(abs(b1) + abs(grid[k])))
            if best_key is None or key > best_key:
                best, best_key = (0.0, float(b1), float(grid[k])), key
    return best


def apply_bias(df, bias):
    """Scored rows with `pred` recomputed from log-probs + bias (raw argmax kept as `raw_pred`)."""
    import numpy as np

    lp = df[[f"logp_{w}" for w in fd.LABELS]].to_numpy(dtype=float) + np.asarray(bias)
    out = df.copy()
    out["raw_pred"] = df["raw_pred"] if "raw_pred" in df else df["pred"]
    out["pred"] = [fd.LABELS[i] for i in lp.argmax(1)]
    return out


def cross_fitted(dev, folds: int = 5, seed: int = 0):
    """Dev predictions where each row's bias was fitted on the other folds (stratified): an honest
    dev estimate of calibrated quality for choosing settings (in-sample would be optimistic)."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    folds = min(folds, int(dev.gold.value_counts().min()))
    if folds < 2:
        return apply_bias(dev, fit_bias(dev))
    parts = []
    for fit_idx, pred_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(dev, dev.gold):
        parts.append(apply_bias(dev.iloc[pred_idx], fit_bias(dev.iloc[fit_idx])))
    return pd.concat(parts).loc[dev.index]


def _acc_f1(gold, pred):
    """Accuracy and macro-F1 (zero_division=0, the three labels) of label-index arrays, vectorised
    over leading axes. Hand-written because it runs on thousands of bootstrap resamples at once:
    sklearn's f1_score scores one resample per call (minutes on this CPU for one run's table);
    a test checks it against sklearn."""
    import numpy as np

    f1 = 0.0
    for c in range(len(fd.LABELS)):
        tp = ((pred == c) & (gold == c)).sum(-1)
        denom = (pred == c).sum(-1) + (gold == c).sum(-1)
        f1 = f1 + np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0) / len(fd.LABELS)
    return (gold == pred).mean(-1), f1


def paired_bootstrap(table, comparisons=(("tuned", "majority"), ("tuned", "zero_shot")),
                     n_resamples: int = 2000, seed: int = 0):
    """How sure is "tuned beats the baseline"? 95% percentile-bootstrap intervals of the
    difference in accuracy and macro-F1, resampling questions with their paired predictions
    (scipy.stats.bootstrap, paired=True). `table` = the run's `predictions` table (gold,
    <model>_pred, <model>_raw_pred); one row per comparison, kind (headline / raw) and metric.
    An interval that contains 0 means the test set cannot tell the two apart."""
    import numpy as np
    import pandas as pd
    from scipy.stats import bootstrap

    index = {w: i for i, w in enumerate(fd.LABELS)}
    gold = table.gold.map(index).to_numpy()
    rows = []
    for a, b in comparisons:
        for kind, suffix in (("headline", "pred"), ("raw", "raw_pred")):
            col_a = f"{a}_{suffix}" if f"{a}_{suffix}" in table else f"{a}_pred"
            col_b = f"{b}_{suffix}" if f"{b}_{suffix}" in table else f"{b}_pred"
            if col_a not in table or col_b not in table:
                continue
            pa, pb = table[col_a].map(index).to_numpy(), table[col_b].map(index).to_numpy()
            for m, metric in enumerate(("accuracy", "macro_f1")):
                def delta(i, axis=-1, m=m):
                    i = np.asarray(i, dtype=int)
                    return _acc_f1(gold[i], pa[i])[m] - _acc_f1(gold[i], pb[i])[m]
                point = float(delta(np.arange(len(gold))))
                ci = bootstrap((np.arange(len(gold)),), delta, vectorized=True, paired=True,
                               n_resamples=n_resamples, method="percentile", random_state=seed,
                               confidence_level=0.95).confidence_interval
                rows.append({"comparison": f"{a} - {b}", "kind": kind, "metric": metric,
                             "delta": round(point, 4), "ci95_low": round(float(ci.low), 4),
                             "ci95_high": round(float(ci.high), 4),
                             "clear": bool(ci.low > 0 or ci.high < 0)})
    return pd.DataFrame(rows)


def confusion_plot(preds: dict[str, object]):
    """One confusion matrix per scored model (name -> DataFrame with gold, pred)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axes = plt.subplots(1, len(preds), figsize=(3.6 * len(preds), 3.4), squeeze=False)
    for ax, (name, df) in zip(axes[0], preds.items()):
        ConfusionMatrixDisplay.from_predictions(df.gold, df.pred, labels=list(fd.LABELS), ax=ax,
                                                colorbar=False)
        m = classification_metrics(df.gold, df.pred)
        ax.set_title(f"{name}\nacc {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def loss_plot(history, best_step: int | None = None):
    """Train / dev loss by step; dev macro-F1 and accuracy (raw label scoring) on a second axis."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for col, label in (("quality.train_loss", "train loss"), ("quality.eval_loss", "dev eval loss")):
        if col in history:
            h = history.dropna(subset=[col])
            ax.plot(h.step, h[col], marker="o", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    handles, labels = ax.get_legend_handles_labels()
    if "quality.step_dev_macro_f1" in history:
        ax2 = ax.twinx()
        h = history.dropna(subset=["quality.step_dev_macro_f1"])
        ax2.plot(h.step, h["quality.step_dev_macro_f1"], "s--", color="tab:green", label="dev macro-F1")
        ax2.plot(h.step, h["quality.step_dev_accuracy"], "^:", color="tab:purple", label="dev accuracy")
        ax2.set_ylabel("dev score (raw)")
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if best_step is not None:
        ax.axvline(best_step, color="grey", lw=0.8, ls="--")
        labels = labels + [f"restored: step {best_step}"]
        handles = handles + [ax.lines[-1]]
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- training

def load_base(p: FinetuneParams):
    """(model, tokenizer): full precision for LoRA, bitsandbytes nf4 for QLoRA."""
    qconf = None
    if p.method == "qlora":
        from transformers import BitsAndBytesConfig

        device = models.resolve_device(p.device)
        qconf = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_use_double_quant=p.double_quant,
                                   bnb_4bit_compute_dtype=models.resolve_dtype(p.dtype, device))
    model, tok = models.load_causal_lm(p.model, device=p.device, dtype=p.dtype, quantization_config=qconf)
    if qconf is not None:
        keep_cpu_4bit_layout(model)
    return model, tok


def keep_cpu_4bit_layout(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for its AVX512-BF16 CPU kernel; returns
    how many Linear4bit layers were switched. Needed for training, not a speed tweak.

    bitsandbytes 0.50.2 repacks a Linear4bit weight on its first no-grad forward in eval mode
    on an AVX512-BF16 CPU (absmax moved to bf16, a new nibble layout), and `state_dict()`
    (every checkpoint or adapter save) converts it back with a "best-effort inverse" that does
    not restore the base weights: without double quantization the absmax keeps the packed
    layout and the dequantized weights come back wrong by up to their own size; with it, they
    drift a little on every cycle. A QLoRA run scores dev, saves a checkpoint and trains on,
    so it trained on a corrupted base from the first save (loss spikes) and scored the restored
    adapter on yet another one. tests/test_finetune.py checks the round trip."""
    n = 0
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def _callback(on_step, history: list, step_s: list):
    """TrainerCallback: train/eval loss to `history` and `on_step(metrics, step)`; step timings."""
    from transformers import TrainerCallback

    class Track(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # before any evaluation of this step
            step_s.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kw):
            m = {}
            if "loss" in (logs or {}):
                m["quality.train_loss"] = float(logs["loss"])
            if "eval_loss" in (logs or {}):
                m["quality.eval_loss"] = float(logs["eval_loss"])
            if m:
                history.append({"step": state.global_step, **m})
                if on_step is not None:
                    on_step(m, state.global_step)

    return Track()


def _dev_score_callback(tok, dev_rows, batch_size: int, on_step, history: list):
    """TrainerCallback: at every evaluation, score the dev rows by label log-probs (as the final
    evaluation does) and add `eval_dev_macro_f1` / `eval_dev_accuracy` to the eval metrics, where
    `metric_for_best_model` and early stopping read them. Must run before EarlyStoppingCallback."""
    from transformers import TrainerCallback

    class DevScore(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            df = score(model, tok, dev_rows, batch_size, "dev scoring")
            model.train()
            m = classification_metrics(df.gold, df.pred)
            if metrics is not None:
                metrics.update({f"eval_dev_{k}": v for k, v in m.items()})
            row = {"quality.step_dev_macro_f1": m["macro_f1"], "quality.step_dev_accuracy": m["accuracy"]}
            history.append({"step": state.global_step, **row})
            if on_step is not None:
                on_step(row, state.global_step)

    return DevScore()


def train(p: FinetuneParams, model, tok, train_rows, dev_rows, workdir: Path, on_step=None):
    """Fine-tune with TRL SFTTrainer + PEFT; returns (peft model, history rows, tokens, train
    seconds, step of the restored best checkpoint or None)."""
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    device = models.resolve_device(p.device)
    if p.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
    targets = "all-linear" if p.target_modules == ["all-linear"] else list(p.target_modules)
    lora = LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=targets,
                      task_type="CAUSAL_LM")
    keep = ("prompt", "completion")
    train_ds = Dataset.from_list([{k: r[k] for k in keep} for r in train_rows])
    dev_ds = Dataset.from_list([{k: r[k] for k in keep} for r in dev_rows])
    evals = p.max_steps == 0 or p.eval_every <= p.max_steps  # else no checkpoint to restore
    cfg = SFTConfig(
        output_dir=str(workdir / "checkpoints"), max_steps=p.max_steps or -1, num_train_epochs=p.epochs,
        learning_rate=p.lr, warmup_steps=p.warmup_steps, lr_scheduler_type="linear",
        per_device_train_batch_size=p.batch_size, per_device_eval_batch_size=p.eval_batch_size,
        gradient_accumulation_steps=p.grad_accum, gradient_checkpointing=p.gradient_checkpointing,
        max_length=p.max_length, completion_only_loss=True, seed=p.seed, data_seed=p.seed,
        logging_steps=p.log_every, eval_strategy="steps", eval_steps=p.eval_every,
        save_strategy="steps" if evals else "no", save_steps=p.eval_every, save_total_limit=1,
        load_best_model_at_end=evals, metric_for_best_model=p.select_on, greater_is_better=p.select_on != "eval_loss",
        include_num_input_tokens_seen="non_padding", report_to="none", use_cpu=device == "cpu",
        bf16=p.dtype == "bfloat16", fp16=p.dtype == "float16", dataloader_num_workers=0,
    )
    history, step_s = [], []
    callbacks = [_callback(on_step, history, step_s)]
    if p.select_on == "dev_macro_f1":
        callbacks.append(_dev_score_callback(tok, dev_rows, p.eval_batch_size, on_step, history))
    if p.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=p.early_stopping_patience))
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=dev_ds,
                         processing_class=tok, peft_config=lora, callbacks=callbacks)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    best_step = int(Path(best).name.rsplit("-", 1)[1]) if best else None
    return trainer.model, history, int(trainer.state.num_input_tokens_seen), sum(step_s), best_step


def export(p: FinetuneParams, peft_model, tok, out: Path) -> dict[str, str]:
    """Adapter folder, and (export=merged) the adapter merged into a full-precision base."""
    from peft import PeftModel

    folders = {"adapter": out / "adapter"}
    peft_model.save_pretrained(folders["adapter"])
    tok.save_pretrained(folders["adapter"])
    if p.export == "merged":
        # Merge into a fresh full-precision base, also for QLoRA: merging into nf4 weights would
        # round the sum back to 4 bits; the QLoRA recipe merges into the 16/32-bit base.
        base, _ = models.load_causal_lm(p.model, device=p.device, dtype=p.dtype)
        merged = PeftModel.from_pretrained(base, str(folders["adapter"])).merge_and_unload()
        folders["merged"] = out / "merged"
        merged.save_pretrained(folders["merged"], safe_serialization=True)
        tok.save_pretrained(folders["merged"])
    return {k: str(v) for k, v in folders.items()}


def load_adapter_model(base: str, adapter_dir: str, device: str = "cpu", dtype: str = "float32"):
    """(base + adapter PeftModel, tokenizer) from an exported adapter folder."""
    from peft import PeftModel

    model, tok = models.load_causal_lm(base, device=device, dtype=dtype)
    return PeftModel.from_pretrained(model, adapter_dir).eval(), tok


# ------------------------------------------------------------------------------------ run

def run(p: FinetuneParams, on_step: Callable[[dict, int], None] | None = None) -> FinetuneResult:
    import pandas as pd

    from llmarch_lab.memory import PeakRSS, weights_mb

    res = FinetuneResult(tags={"model": p.model, "method": p.method})
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

    preds, dev_preds = {}, {}
    majority = splits.train.decision.mode()[0]  # majority label of train, never of test
    preds["majority"] = test.assign(gold=test.decision, pred=majority)[["id", "gold", "pred"]]
    (model, tok), load_s = models.timed(load_base, p)
    res.add("latency.load_s", load_s)
    res.add("memory.base_weights_mb", weights_mb(model))  # counts bnb scales too
    if p.zero_shot:
        preds["zero_shot"] = score(model, tok, rows["test"], p.eval_batch_size, "zero-shot test")
        dev_preds["zero_shot"] = score(model, tok, rows["dev"], p.eval_batch_size, "zero-shot dev")

    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as rss:
        peft_model, history, n_tok, train_s, best_step = train(p, model, tok, rows["train"], rows["dev"], Path(tmp), on_step)
    res.add("memory.peak_rss_mb", rss.mb)
    res.add("latency.train_s", train_s)
    res.add("throughput.train_tok_per_s", n_tok / max(train_s, 1e-9))
    hist = pd.DataFrame(history).groupby("step", as_index=False).first() if history else pd.DataFrame()
    res.tables["train_log"] = hist
    if len(hist):
        res.figures["loss_curve"] = loss_plot(hist, best_step)
        if "quality.train_loss" in hist:
            res.add("quality.final_train_loss", hist["quality.train_loss"].dropna().iloc[-1])
        if "quality.eval_loss" in hist:
            res.add("quality.best_eval_loss", hist["quality.eval_loss"].min())
    res.tags["steps_done"] = str(int(hist.step.max()) if len(hist) else 0)
    if best_step is not None:  # the checkpoint the tuned model was restored to (select_on)
        res.add("quality.best_step", best_step)

    preds["tuned"] = score(peft_model, tok, rows["test"], p.eval_batch_size, "tuned test")
    dev_preds["tuned"] = score(peft_model, tok, rows["dev"], p.eval_batch_size, "tuned dev")
    # Raw = argmax of the label log-probs; calibrated = plus a bias fitted on dev for that model
    # (test rows never enter the fit). `calibrate` picks which one is the headline metric.
    calib = []
    for name, dev_df in dev_preds.items():
        bias = fit_bias(dev_df)
        calib.append({"model": name, **{f"bias_{w}": b for w, b in zip(fd.LABELS, bias)}})
        raw, cal = preds[name], apply_bias(preds[name], bias)
        prefix = "" if name == "tuned" else f"{name}_"
        for kind, df in (("raw", raw), ("calibrated", cal)):
            for k, v in classification_metrics(df.gold, df.pred).items():
                res.add(f"quality.{prefix}{kind}_{k}", v)
        dev_sets = {"raw": dev_df, "calibrated": cross_fitted(dev_df, seed=p.seed)}
        for kind, df in dev_sets.items():
            for k, v in classification_metrics(df.gold, df.pred).items():
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
            for k, v in classification_metrics(df.gold, df.pred).items():
                res.add(f"quality.majority_{k}", v)
    res.tables["calibration"] = pd.DataFrame(calib)
    res.tables["dev_predictions"] = pd.concat([df.assign(model=name) for name, df in dev_preds.items()],
                                              ignore_index=True)
    res.tags["calibrate"] = p.calibrate
    res.figures["confusion"] = confusion_plot(preds)
    table = test[["id", "question", "decision"]].rename(columns={"decision": "gold"})
    for name, df in preds.items():
        cols = {c: f"{name}_{c}" for c in df.columns if c not in ("id", "gold")}
        table = table.merge(df.drop(columns="gold").rename(columns=cols), on="id")
    res.tables["predictions"] = table
    if len(table) >= 10:  # a bootstrap over fewer questions says nothing
        res.tables["significance"] = sig = paired_bootstrap(table)
        for r in sig[sig.kind == "headline"].itertuples():  # e.g. quality.accuracy_gain_vs_majority_ci95_low
            base = f"quality.{r.metric}_gain_vs_{r.comparison.split(' - ')[1]}"
            res.add(f"{base}_ci95_low", r.ci95_low)
            res.add(f"{base}_ci95_high", r.ci95_high)

    if p.export != "none":
        out = Path(p.output_dir) if p.output_dir else Path(tempfile.mkdtemp(prefix="run-", dir=_export_root()))
        res.artifacts = export(p, peft_model, tok, out)
    return res


def _export_root() -> Path:
    root = paths.cache_dir() / "finetune"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ------------------------------------------------------------------------------ script entry

def main(argv: list[str] | None = None) -> int:
    """`python -m llmarch_lab.finetune key=value ...` (also under `accelerate launch`): one run,
    logged to MLflow by rank 0. Values are YAML scalars/lists: r=32 target_modules='[q_proj]'."""
    import os
    import sys

    import yaml

    from llmarch_lab import config, tracking

    args = sys.argv[1:] if argv is None else argv
    try:
        bad = [a for a in args if "=" not in a]
        if bad:
            raise LabError(f"arguments are key=value, got {bad[0]!r} (keys: {', '.join(FinetuneParams.model_fields)})")
        values = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args)}
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
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
