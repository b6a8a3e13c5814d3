# Quick start: `make run` (server with the embedded SQLite default), `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= instance
HOST ?= 127.0.0.1
PORT ?= 5232
BIN = $(VENV)/bin

.PHONY: install run test lint conformance bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	@test -f $(HOME_DIR)/radicale.conf || $(BIN)/servicehop-caldav init --home $(HOME_DIR)
	$(BIN)/servicehop-caldav serve --home $(HOME_DIR) --host $(HOST) --port $(PORT)

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
