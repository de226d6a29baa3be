# Two commands do everything on a fresh machine (see README):
#   make demo   the main job on the embedded sample corpus: `deescalwild bench`, a release, and
#               two scripted simulator sessions (calm tactics, then threats) with their reports
#   make test   the test suite (lint + pytest)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
# llama-cpp-python (the gguf extra) builds from source: a portable CPU build, no curl
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF

.PHONY: demo test lint bench docs clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# stamp files: reinstall only when the package metadata changes
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench,bertscore,release,sim]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

# the main job on the embedded sample: import -> curate -> split -> cases -> eval -> leaderboard,
# then the releasable dataset made from the same split
demo: $(VENV)/.installed
	$(BIN)/deescalwild bench -o $(OUT)/bench
	$(BIN)/deescalwild release $(OUT)/bench/split.jsonl -o $(OUT)/release
	$(BIN)/deescalwild simulate --card traffic-stop-night-shift --db $(OUT)/sim.db \
	  --report-dir $(OUT)/sim-reports < examples/sim/calm.txt
	$(BIN)/deescalwild simulate --card traffic-stop-night-shift --db $(OUT)/sim.db \
	  --report-dir $(OUT)/sim-reports < examples/sim/threats.txt

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/import_speed.py
	$(BIN)/python benchmarks/curate_speed.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/retrieval_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/sim_load.py
	$(BIN)/python benchmarks/acquire_list.py

docs: $(VENV)/.installed
	$(BIN)/python scripts/cli_docs.py > docs/cli.md

# Debian packages the tests drive: ffmpeg + espeak-ng (acquisition: media made and decoded on the
# spot), Chromium (the simulator's browser test). Installed only when missing and when we can.
SYSTEM_TOOLS := ffmpeg espeak-ng chromium
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then echo "system tools present: $(SYSTEM_TOOLS)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing"; \
	  apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; }; \
	else echo "missing:$$missing (tests that need them are skipped)"; fi

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
