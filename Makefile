# Set-up and the two everyday commands. `make repro` runs the pipeline; `make test` the tests.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
TORCH ?= torch==2.13.0
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: repro test test-fast lint params bench flagship

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# A stage that reproduces bytes the cache already holds keeps its own copy (DVC links only
# new cache entries): --relink makes every output share the cache's bytes again.
repro: $(VENV)/.installed
	dvc repro
	dvc checkout --relink --quiet

test: $(VENV)/.installed lint
	python -m pytest -q --durations=25

# The quick loop: every test but tests/system/ (marked slow by folder: pipelines, DVC, servers).
test-fast: $(VENV)/.installed lint
	python -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	ruff check src tests scripts benchmarks

params: $(VENV)/.installed
	audioclf params

# The benchmark suite (15-20 min on 2 cores): reports/bench.json and reports/bench.md.
bench: $(VENV)/.installed
	python -m benchmarks --threads 1

# The flagship recipe (conf/experiment/flagship.yaml): facebook/wav2vec2-base fine-tuned on
# MInDS-14 en-US, both from the Hugging Face Hub, so this target alone goes online; trains on the
# GPU where torch sees one. An experiment (`dvc exp show`); more options:
# make flagship FLAGSHIP_ARGS="-S train.epochs=20".
FLAGSHIP_ARGS ?=
flagship: export HF_HUB_OFFLINE = 0
flagship: export HF_DATASETS_OFFLINE = 0
flagship: $(VENV)/.installed
	dvc exp run -S experiment=flagship $(FLAGSHIP_ARGS)
