# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test install install-test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

## Install, upgrade the database, load the demo and start web app + scheduler.
run: install
	$(BIN)/klubpost db upgrade
	$(BIN)/klubpost demo
	$(BIN)/klubpost dev

## Install with test tools and run the whole test suite.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
