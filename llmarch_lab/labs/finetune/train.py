"""Training for the fine-tuning lab: the base model (full precision or nf4), TRL SFTTrainer with
a PEFT LoRA adapter, per-evaluation dev scoring and best-checkpoint restore, export.

    from llmarch_lab.labs.finetune import train
    model, tok = train.load_base(params)
    peft_model, history, tokens, seconds, best_step = train.train(params, model, tok, train_rows, dev_rows, workdir)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from llmarch_lab.assets import models
from llmarch_lab.labs.finetune import scoring
from llmarch_lab.llm import quant

if TYPE_CHECKING:
    from llmarch_lab.labs.finetune.params import FinetuneParams


def load_base(p: FinetuneParams):
    """(model, tokenizer): full precision for LoRA, bitsandbytes nf4 for QLoRA."""
    qconf = None
    if p.method == "qlora":
        qconf = quant.nf4(p.dtype, models.resolve_device(p.device), p.double_quant)
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
            df = scoring.score(model, tok, dev_rows, batch_size, "dev scoring")
            model.train()
            m = scoring.classification_metrics(df.gold, df.pred)
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
