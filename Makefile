# Docloop developer commands. `make demo` and `make test` work on a fresh machine: they bootstrap
# their own virtual environment and start local Kafka and PostgreSQL (deploy/local/).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= /tmp/docloop-local
export DOCLOOP_TEST_DATABASE_URL ?= postgresql+asyncpg://docloop:docloop@127.0.0.1:5433/docloop_test
export DOCLOOP_TEST_KAFKA ?= localhost:9092
# The local broker also gets a SASL_PLAINTEXT listener (SCRAM-SHA-512 and PLAIN, user docloop) for the
# Kafka security tests; a broker already running without it must be restarted (deploy/local/kafka.sh stop).
export DOCLOOP_KAFKA_SCRAM_PORT ?= 9094
export DOCLOOP_TEST_KAFKA_SCRAM ?= localhost:$(DOCLOOP_KAFKA_SCRAM_PORT)

.PHONY: venv up down chromium test test-fast demo bench lint schemas clean

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

# The HTML report's browser tests drive Debian's chromium (never a browser downloaded by Playwright).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get install -y chromium || { $$sudo apt-get update && $$sudo apt-get install -y chromium; }; \
	fi

test: venv up chromium
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not kafka and not postgres"

# The demo starts the local Kafka if it is not running, and stops it again afterwards if it started it.
demo: venv
	@if deploy/local/kafka.sh status >/dev/null 2>&1; then started=no; else started=yes; deploy/local/kafka.sh start >/dev/null; fi; \
	$(VENV)/bin/docloop demo --out demo-out; status=$$?; \
	if [ $$started = yes ]; then deploy/local/kafka.sh stop >/dev/null; fi; exit $$status

# Not part of `make test`: throughput, latency, scaling and memory on the local Kafka and PostgreSQL
# (bench/run.py; knobs such as BENCH_EVENTS=20000 BENCH_SCALE_CASES=100000 are environment variables).
bench: venv up
	$(PY) -m bench.run

schemas: venv
	$(VENV)/bin/docloop schemas export

lint: venv
	$(VENV)/bin/ruff check engine schemas tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache test-artifacts
