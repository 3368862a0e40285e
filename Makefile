# One gate: format check, lint, strict types, tests. `make check` runs the quick lane of the
# tests (minutes, for every change); `make check-all` runs every test, and is what CI runs.
PYTHON ?= python
# The lowest versions pyproject.toml allows, in their own environment (`make floors`).
FLOOR_VENV ?= build/floor-venv

# What takes a test out of the quick lane: the markers in pyproject.toml (tests/conftest.py
# marks the users of a browser or a database; tests/test_suite.py checks that this list names
# every marker registered there).
LANES = embedded or train or browser or services or langgraph_dev or npm or slow

.PHONY: check check-all format lint types test test-all node chromium bench floors

check: lint types test

check-all: lint types test-all

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

lint:
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

types:
	$(PYTHON) -m mypy

# The quick lane: every test that needs nothing but the simulated server and runs in seconds.
# Its wall time is printed, since keeping it under 3 minutes on 2 cores is the point of it.
test:
	@start=$$(date +%s); $(PYTHON) -m pytest -q -m "not ($(LANES))"; status=$$?; \
		echo "make test: quick lane took $$(( $$(date +%s) - start )) s of wall time"; exit $$status

# Every test, nothing deselected (the summary lists any skip with its reason: -rfEs in
# pyproject.toml).
test-all: node chromium
	$(PYTHON) -m pytest -q

# The Node check of `feedit serve` needs the official openai Node client (skipped without node).
node:
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/node --no-audit --no-fund --silent; fi

# The trace-page tests drive Debian's chromium (skipped without one): installed here when
# missing and we are root with apt-get, as on a fresh CI machine.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "make test-all: could not install chromium; the browser tests will skip"; fi

bench:
	$(PYTHON) bench/endpoints.py
	$(PYTHON) bench/graph.py
	$(PYTHON) bench/batch.py
	$(PYTHON) bench/sweep.py
	$(PYTHON) bench/fixed.py

# Every dependency at its floor (pins read from pyproject.toml by .ci/floors.py), then the tests.
# Lint and types are left out: they check the code, not the versions it runs on. Every test runs.
floors: node chromium
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(PYTHON) .ci/floors.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/pip install -q -c $(FLOOR_VENV)/constraints.txt -e '.[test]'
	$(FLOOR_VENV)/bin/python .ci/floors.py --check
	$(FLOOR_VENV)/bin/python -m pytest -q
