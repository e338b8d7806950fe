# Everything runs in the project's own .venv, created on demand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LINT_DIRS := $(wildcard src tests bench examples)

.PHONY: help venv dev demo test lint typecheck unit bench clean

help:
	@echo "make demo   - run the demo (creates .venv if needed)"
	@echo "make test   - ruff, mypy --strict and the test suite"
	@echo "make bench  - benchmarks against the peers; writes bench/RESULTS.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[rich,trio]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,rich,trio,starlette,otel]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/python -m pip install -q -e '.[dev,bench,rich,trio,starlette,otel]'
	touch $@

venv: $(VENV)/.installed-run
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-run
	$(BIN)/python -m workpool demo $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
