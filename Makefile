# Quick start: `make run` (server with the embedded SQLite default), `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= instance
HOST ?= 127.0.0.1
PORT ?= 5232
BIN = $(VENV)/bin

.PHONY: install run test lint conformance clean

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
	$(BIN)/ruff check servicehop_caldav plugins tests scripts config
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

conformance: install
	$(BIN)/python scripts/conformance.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
