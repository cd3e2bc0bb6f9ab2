# boxcut: `make run` starts the whole stack on this machine; `make test` installs everything and runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: install install-run run test check lint typecheck unit integration drills docs settings-docs bench soak soak-ci mutation lock wheel-check compose-up clean

# Runtime dependencies at the exact versions of requirements.lock; the dev tools (tests, linters) only for `make
# test` and the other development targets.
$(RUN_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install-run: $(RUN_STAMP)

install: $(STAMP)

run: install-run
	$(BIN)/boxcut dev

# The lanes. `make check` (lint, types, unit: no services, under 2 minutes) is the one to run while working;
# `make integration` (real Redis, prefork workers, boxsim over HTTP, PostgreSQL, RabbitMQ, a browser, the examples of
# the docs) and `make drills` (fault drills) start or install what they need; `make test` runs every lane, and
# `make docs` builds the documentation strictly (a broken link fails it). Each lane prints its slowest tests.
DURATIONS ?= --durations=15

test: check docs integration drills

check: lint typecheck unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	scripts/ensure-promtool
	$(BIN)/pytest -q $(DURATIONS) tests/unit

integration: install
	scripts/ensure-redis-server
	scripts/ensure-chromium
	scripts/ensure-node-deps
	scripts/ensure-rabbitmq
	scripts/ensure-postgres
	$(BIN)/pytest -q $(DURATIONS) tests/integration tests/soak

drills: install
	scripts/ensure-redis-server
	$(BIN)/pytest -q $(DURATIONS) tests/drills

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

# docs/configuration.md and .env.example are made from config/catalogue.py; run after declaring a setting (a unit
# test fails while they are stale).
settings-docs: install
	$(BIN)/python -m config.reference --write

bench: install
	scripts/ensure-redis-server
	$(BIN)/python bench/terminate.py
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/offboard.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/storm.py --alerts 1000 --seconds 10 --budget 100 -c 4
	$(BIN)/python bench/storm.py --alerts 2000 --seconds 20 --budget 40 --sim-rate-limit 40 -c 4
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/footprint.py --alerts 500 --reads 100 --repeat 1

# A soak: a mixed workload under faults drawn from a seed, then invariants (tests/soak/); SOAK_ARGS, e.g.
# `make soak SOAK_ARGS="--seconds 1800 --seed 42"`. `soak-ci` is the 3-minute run .ci/run makes after `make test`:
# a new seed each time (printed first, to replay a failure), or SOAK_SEED; its logs and Redis files stay in
# build/soak-ci for a post-mortem.
SOAK_ARGS ?= --seconds 180
SOAK_SEED ?=
soak: install
	scripts/ensure-redis-server
	scripts/ensure-postgres
	$(BIN)/python -m tests.soak $(SOAK_ARGS)

soak-ci: install
	scripts/ensure-redis-server
	scripts/ensure-postgres
	rm -rf build/soak-ci
	$(BIN)/python -m tests.soak --seconds 180 --keep build/soak-ci $(if $(SOAK_SEED),--seed $(SOAK_SEED))

# Mutation testing of the code that decides who is terminated ([tool.mutmut] in pyproject.toml); a few minutes.
mutation: install
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results

# requirements.lock: the runtime dependencies at exact versions (the Dockerfile installs from it). Run after
# changing pyproject.toml's dependencies.
lock: install
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml

# Build the wheel, install it alone in a fresh virtual environment, and run it (`.ci/run` does this after the tests).
wheel-check: install
	scripts/check-wheel

# The compose stack (needs Docker): secrets/ made once, then every service. COMPOSE_FILES adds a variant, e.g.
# `make compose-up COMPOSE_FILES="-f docker-compose.yml -f docker-compose.sentinel.yml"`.
COMPOSE_FILES ?= -f docker-compose.yml
compose-up:
	scripts/make-secrets
	docker compose $(COMPOSE_FILES) up -d

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants dist build
