# Docloop developer commands. `make demo` and `make test` work on a fresh machine: they bootstrap
# their own virtual environment and start local Kafka and PostgreSQL (deploy/local/).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= /tmp/docloop-local
export DOCLOOP_TEST_DATABASE_URL ?= postgresql+asyncpg://docloop:docloop@127.0.0.1:5433/docloop_test
export DOCLOOP_TEST_KAFKA ?= localhost:9092

.PHONY: venv up down test test-fast demo bench lint schemas clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

up:
	@deploy/local/up.sh

down:
	@deploy/local/down.sh

test: venv up
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not kafka and not postgres"

demo: venv
	$(VENV)/bin/docloop replay engine/examples/scenario.jsonl --out demo-out
	$(VENV)/bin/docloop report --database-url sqlite+aiosqlite:///demo-out/docloop.db

schemas: venv
	$(VENV)/bin/docloop schemas export

lint: venv
	$(VENV)/bin/ruff check engine schemas tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache
