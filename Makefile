# wsfanout — one set of checks, locally and in CI.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install test test-browser lint format demo dev bench-core bench-jobs clean

install: $(STAMP)

# Re-install only when the project's metadata changes; the venv is created when missing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install lint
	$(BIN)/python -m pytest --cov --cov-report=term

# The demo page in a real headless Chromium: Debian's `chromium` (installed when missing; that
# needs root) driven by Playwright, whose own browser download is never used.
test-browser: install
	@command -v chromium >/dev/null || [ "$$(id -u)" = 0 ] || \
		{ echo "test-browser: chromium is missing; run: sudo apt-get install -y chromium" >&2; exit 1; }
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pip install --quiet playwright
	$(BIN)/python -m pytest -m browser -p no:cacheprovider

lint: install
	$(BIN)/ruff format --check wsfanout tests
	$(BIN)/ruff check wsfanout tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format wsfanout tests
	$(BIN)/ruff check --fix wsfanout tests

# The main job: the whole system on this machine, 1,000 real WebSocket clients, with a report.
demo: install
	$(BIN)/wsfanout demo

# The local stack for manual work: prints the URLs and the exports for a second shell.
dev: install
	$(BIN)/wsfanout dev

# The core comparison: the classic sequential loop vs the engine, same endpoint, same run.
bench-core: install
	$(BIN)/wsfanout bench core

# One 50,000-connection "all" job carried by 3-second worker invocations (about 12 minutes).
bench-jobs: install
	$(BIN)/wsfanout bench jobs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
