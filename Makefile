# `make demo` runs a server fed with a real Grubhub instance; `make test` runs
# every check CI runs. Both set up .venv on first use.

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	bash scripts/demo.sh

test: lint typecheck unit

lint: install
	$(BIN)/ruff check ordercast tests bench
	$(BIN)/ruff format --check ordercast tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest --cov --cov-report=term

bench: install
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache .coverage
