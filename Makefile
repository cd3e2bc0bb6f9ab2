# boxcut: `make run` starts the whole stack on this machine; `make test` installs everything and runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/boxcut dev

test: install lint typecheck
	scripts/ensure-redis-server
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	scripts/ensure-redis-server
	$(BIN)/pytest -q tests/integration tests/drills

bench: install
	scripts/ensure-redis-server
	$(BIN)/python bench/terminate.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/offboard.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/storm.py

# Mutation testing of the code that decides who is terminated ([tool.mutmut] in pyproject.toml); a few minutes.
mutation: install
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants
