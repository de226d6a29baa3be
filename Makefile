# Two commands do everything on a fresh machine (see README):
#   make demo   the main job on the embedded sample corpus
#   make test   the test suite (lint + pytest)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# stamp files: reinstall only when the package metadata changes
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[release]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

# the whole data path on the embedded sample: import -> curate -> split -> release
demo: $(VENV)/.installed
	$(BIN)/deescalwild corpus import --sample -o $(OUT)/sample.jsonl
	$(BIN)/deescalwild curate $(OUT)/sample.jsonl -o $(OUT)/curated.jsonl --report $(OUT)/curate_report.json
	$(BIN)/deescalwild split $(OUT)/curated.jsonl -o $(OUT)/split.jsonl --strategy clean --seed 0 --report $(OUT)/split_report.json
	$(BIN)/deescalwild release $(OUT)/split.jsonl -o $(OUT)/release
	$(BIN)/deescalwild corpus stats $(OUT)/split.jsonl

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/import_speed.py
	$(BIN)/python benchmarks/curate_speed.py

docs: $(VENV)/.installed
	$(BIN)/python scripts/cli_docs.py > docs/cli.md

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
