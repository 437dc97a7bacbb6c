"""The fine-tuning lab's parameters (its own module: train.py and lab.py both use them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmarch_lab.config import LLMFields


class FinetuneParams(LLMFields):
    lab = "finetune"
    key_metrics = ("quality.accuracy", "quality.macro_f1", "quality.zero_shot_macro_f1",
                   "quality.dev_macro_f1", "throughput.train_tok_per_s", "memory.peak_rss_mb")

    # model
    # model, device, dtype (config.LLMFields; dtype is also the QLoRA compute dtype)
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
