# OfferHub. `make run` serves the marketplace on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The suite runs against real PostgreSQL and Redis (override either on the command line).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/offerhub
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# Three pytest-xdist workers (each on its own test database): much of the suite waits on live
# test servers and the sandboxes, so it is I/O-bound; `make test PYTEST_ARGS=` runs it serially.
# Work stealing: each worker takes a contiguous share (a module's browser stays on one worker)
# and an idle one takes over the rest of a busy one's, so no slow tail is left on one worker.
PYTEST_ARGS ?= -n 3 --dist worksteal

.PHONY: install run test lint format bench vendor migrations clean

# The second install is the Python client (clients/python, package offerhub-client), tested against the live server.
$(VENV)/.installed: pyproject.toml requirements.lock clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	$(PY) -m pip install --quiet -c requirements.lock -e clients/python
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	PORT=$(PORT) $(PY) manage.py serve --port $(PORT) --seed

test: install
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(PY) -m pytest $(PYTEST_ARGS)

# Figures for docs/benchmarks.md, against a PostgreSQL database of its own (reset each run).
bench: install
	$(PY) tests/benchmarks/run.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrations: install
	$(PY) manage.py makemigrations

# Refresh static/vendor from the npm registry (versions in frontend/package.json).
vendor:
	./frontend/vendor.sh

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
