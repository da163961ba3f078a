# wsfanout — one set of checks, locally and in CI.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# `make demo` and `make dev` need only the local stack's extras, `make package` only the
# handlers': a first run installs what it runs, not the dev toolchain and checkov.
LOCAL_STAMP  = $(VENV)/.installed-local
LAMBDA_STAMP = $(VENV)/.installed-lambda
# checkov pins many dependencies of its own, so it lives in a venv of its own, at one version
# (a new release brings new checks: adopt them on purpose).
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV    ?= .venv-checkov
CHECKOV_STAMP    = $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: install test checks test-browser chromium faults lint format docs demo dev bench bench-jobs package deploy checkov clean

install: $(STAMP)

# Re-install only when the project's metadata changes; the venv is created when missing.
$(STAMP): EXTRAS = dev
$(LOCAL_STAMP): EXTRAS = local,cli,lambda
$(LAMBDA_STAMP): EXTRAS = lambda
$(STAMP) $(LOCAL_STAMP) $(LAMBDA_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# The browser tests (Playwright, from the test extra, driving Debian's chromium) are part of the
# suite: `chromium` installs the browser where it can, and they skip with the reason where not.
# The checks before the tests run two at a time, each one's output printed whole when it ends:
# checkov's virtualenv installs and scans beside the project's venv, ruff, mypy and mkdocs (on a
# fresh clone that overlaps minutes); then the tests run alone. --durations=30: every log shows
# the slowest tests, so a slow one is seen where it came in.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target checks
	$(BIN)/python -m pytest --cov --cov-report=term --durations=30

# Everything `make test` checks before its tests (also alone: `make -j2 checks`).
checks: install lint checkov docs chromium

# The fault suite alone (it also runs in `make test`), printing each scenario's figures and the
# table of docs/reliability.md at the end.
faults: install
	$(BIN)/python -m pytest -m faults -s -p no:cacheprovider

# The browser tests alone (the demo page and wsfanout.js in a real headless Chromium): Debian's
# `chromium` (installed when missing; that needs root) driven by Playwright, whose own browser
# download is never used.
test-browser: install
	@command -v chromium >/dev/null || [ "$$(id -u)" = 0 ] || \
		{ echo "test-browser: chromium is missing; run: sudo apt-get install -y chromium" >&2; exit 1; }
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pytest -m browser -p no:cacheprovider

# Debian's chromium for the browser tests, installed when missing and installable (root with
# apt-get); otherwise one line says that the browser tests will be skipped.
chromium:
	@command -v chromium >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "make: no chromium (apt-get install chromium): the browser tests will be skipped"

lint: install
	$(BIN)/ruff format --check wsfanout tests deploy examples docs/_ext
	$(BIN)/ruff check wsfanout tests deploy examples docs/_ext
	$(BIN)/mypy

format: install
	$(BIN)/ruff format wsfanout tests deploy examples docs/_ext
	$(BIN)/ruff check --fix wsfanout tests deploy examples docs/_ext

# The documentation site (mkdocs.yml, docs/) into site/. --strict: a broken link, a missing
# anchor or an unresolved reference fails the build (not --quiet: it hides the warnings that
# --strict counts). Material's end-of-life notice is not ours.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The main job: the whole system on this machine, 1,000 real WebSocket clients, with a report.
demo: $(LOCAL_STAMP)
	$(BIN)/wsfanout demo

# The local stack for manual work, run from deploy/template.yaml (its default here): prints the
# URLs, a development token and the exports for a second shell.
dev: $(LOCAL_STAMP)
	$(BIN)/wsfanout dev

# Every figure of docs/performance.md, from one run on this machine (about 35
# minutes): the side-by-side comparison, the zero-latency CPU comparison with both floors over
# plain HTTP and over TLS (as on AWS), 429s, the N x concurrency sweep, the distributed sweep,
# the account quota shared by S workers and the end-to-end latency of 1,000 WebSocket clients.
# JSON and plots go to $(BENCH_OUT)/.
BENCH_OUT ?= bench-results
bench: install
	mkdir -p $(BENCH_OUT)
	$(BIN)/wsfanout bench --json $(BENCH_OUT)/compare.json
	$(BIN)/wsfanout bench --connections 10000 --latency 0 --gone-rate 0 \
		--algorithms floor,floor-raw,engine,engine-raw,engine-memory,engine-botocore --repeat 9 \
		--json $(BENCH_OUT)/zero-latency.json
	$(BIN)/wsfanout bench --connections 10000 --latency 0 --gone-rate 0 --tls \
		--algorithms floor,floor-raw,engine,engine-raw,engine-memory,engine-botocore --repeat 9 \
		--json $(BENCH_OUT)/zero-latency-tls.json
	$(BIN)/wsfanout bench --gone-rate 0 --throttle-rate 0.3 --algorithms gather,engine \
		--json $(BENCH_OUT)/throttled.json
	$(BIN)/wsfanout bench scaling --json $(BENCH_OUT)/scaling.json --plot $(BENCH_OUT)/scaling.png
	$(BIN)/wsfanout bench distributed --json $(BENCH_OUT)/distributed.json \
		--plot $(BENCH_OUT)/distributed.png
	$(BIN)/wsfanout bench quota --segments 1,2,4 --pacing aimd,learnt --json $(BENCH_OUT)/quota.json
	$(BIN)/wsfanout bench e2e --json $(BENCH_OUT)/e2e.json
	$(BIN)/wsfanout bench coldstart --invoke --json $(BENCH_OUT)/coldstart.json

# One 50,000-connection "all" job carried by 3-second worker invocations (about 12 minutes).
bench-jobs: install
	$(BIN)/wsfanout bench jobs

# The IaC security scan of the SAM template; each accepted finding is skipped in the template
# with its reason.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --file deploy/template.yaml --framework cloudformation \
		--quiet --compact --skip-download

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

# The Lambda artifact, build/lambda.zip: arm64, Python 3.12, built with pip's platform options
# (no Docker), from wsfanout and its [lambda] extra at the versions in .venv; prints its size.
package: $(LAMBDA_STAMP)
	$(BIN)/python deploy/package.py

# Deploy to AWS (needs the AWS SAM CLI and credentials). The first run asks for the stack name,
# region and parameters and keeps the answers in deploy/samconfig.toml; later runs offer them.
deploy: package
	@command -v sam >/dev/null || \
		{ echo "deploy: the AWS SAM CLI is missing; install it: https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html" >&2; exit 2; }
	cd deploy && sam deploy --guided --template-file template.yaml

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build site $(BENCH_OUT) .pytest_cache .mypy_cache .ruff_cache .coverage
