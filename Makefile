# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
BIN     = $(VENV)/bin

.PHONY: run test install install-test lint translations

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
	$(BIN)/klubpost dev --port $(PORT)

## Install with test tools and run the whole test suite.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## After changing user-facing text: refresh the catalogs, translate, then compile.
translations: install-test
	$(BIN)/pybabel extract -F babel.cfg -k _l --no-location --sort-output \
		-o klubpost/translations/messages.pot klubpost accounts subscribers campaigns tracking
	$(BIN)/pybabel update -i klubpost/translations/messages.pot -d klubpost/translations \
		--ignore-obsolete --width 88
	$(BIN)/pybabel compile -d klubpost/translations
