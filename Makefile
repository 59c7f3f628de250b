# Set-up and the two everyday commands. `make repro` runs the pipeline; `make test` the tests.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
TORCH ?= torch==2.13.0
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: repro test test-fast lint params bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

repro: $(VENV)/.installed
	dvc repro

test: $(VENV)/.installed lint
	python -m pytest -q

# The quick loop: everything but the tests marked slow (real trainings, whole pipelines).
test-fast: $(VENV)/.installed lint
	python -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	ruff check src tests scripts benchmarks

params: $(VENV)/.installed
	audioclf params

# The benchmark suite (15-20 min on 2 cores): reports/bench.json and reports/bench.md.
bench: $(VENV)/.installed
	python -m benchmarks --threads 1
