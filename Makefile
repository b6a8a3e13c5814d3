# Quick start: `make run` (server with the embedded SQLite default), `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= instance
HOST ?= 127.0.0.1
PORT ?= 5232
# `make run LOG_LEVEL=info` shows one line per request and booking decision.
LOG_LEVEL ?= warning
BIN = $(VENV)/bin

.PHONY: install run test lint conformance bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The first run makes the demo municipality (servicehop-caldav demo) and prints its logins.
run: install
	@if test -f $(HOME_DIR)/radicale.conf; then \
		test ! -f $(HOME_DIR)/demo-accounts.txt || echo "The demo's logins and passwords: $(HOME_DIR)/demo-accounts.txt"; \
	else $(BIN)/servicehop-caldav demo --home $(HOME_DIR) --host $(HOST) --port $(PORT); fi
	$(BIN)/servicehop-caldav serve --home $(HOME_DIR) --host $(HOST) --port $(PORT) --log-level $(LOG_LEVEL)

lint: install
	$(BIN)/ruff check servicehop_caldav plugins tests scripts config bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

conformance: install
	$(BIN)/python scripts/conformance.py

# Benchmark against stock Radicale and Xandikos: make bench BENCH_ARGS="--sizes 1000 --json bench.json"
BENCH_ARGS ?=
$(BIN)/.bench-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
