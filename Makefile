# One gate: format check, lint, strict types, tests. CI runs `make check`.
PYTHON ?= python
# The lowest versions pyproject.toml allows, in their own environment (`make floors`).
FLOOR_VENV ?= build/floor-venv

.PHONY: check format lint types test bench floors

check: lint types test

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

lint:
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

types:
	$(PYTHON) -m mypy

# The Node check of `feedit serve` needs the official openai Node client (skipped without node).
# The trace-page tests drive Debian's chromium (skipped without one): installed here when
# missing and we are root with apt-get, as on a fresh CI machine.
test:
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/node --no-audit --no-fund --silent; fi
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "make test: could not install chromium; the browser tests will skip"; fi
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/endpoints.py
	$(PYTHON) bench/graph.py
	$(PYTHON) bench/batch.py
	$(PYTHON) bench/sweep.py
	$(PYTHON) bench/fixed.py

# Every dependency at its floor (pins read from pyproject.toml by .ci/floors.py), then the tests.
# Lint and types are left out: they check the code, not the versions it runs on.
floors:
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(PYTHON) .ci/floors.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/pip install -q -c $(FLOOR_VENV)/constraints.txt -e '.[test]'
	$(FLOOR_VENV)/bin/python .ci/floors.py --check
	$(FLOOR_VENV)/bin/python -m pytest -q
