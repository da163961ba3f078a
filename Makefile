# wsfanout — one set of checks, locally and in CI.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install test lint format bench-core clean

install: $(STAMP)

# Re-install only when the project's metadata changes; the venv is created when missing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install lint
	$(BIN)/python -m pytest --cov --cov-report=term

lint: install
	$(BIN)/ruff format --check wsfanout tests
	$(BIN)/ruff check wsfanout tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format wsfanout tests
	$(BIN)/ruff check --fix wsfanout tests

# The core comparison: the classic sequential loop vs the engine, same endpoint, same run.
bench-core: install
	$(BIN)/wsfanout bench core

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
