# One gate: format check, lint, strict types, tests. CI runs `make check`.
PYTHON ?= python

.PHONY: check format lint types test bench

check: lint types test

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

lint:
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

types:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/endpoints.py
	$(PYTHON) bench/graph.py
	$(PYTHON) bench/batch.py
	$(PYTHON) bench/sweep.py
