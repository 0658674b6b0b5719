# Entry points for people and CI. Everything runs from the project virtualenv in .venv, which is
# (re)installed only when pyproject.toml changes. `make test` needs no running infrastructure:
# the test fixtures start their own Kafka broker (port 19092) and PostgreSQL (port 55433).
# `make up` and `make test` first check the system packages they need (Java, Maven, and for the
# tests PostgreSQL, Chromium, a CJK font): deploy/install-system-deps.sh installs what is missing
# when run as root on Debian, or stops with the one command to run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for `unbind up`, e.g. make up ARGS="--database-url postgresql+asyncpg://postgres@127.0.0.1:55432"
ARGS ?=
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="tests/cli -x"
PYTEST_ARGS ?=
# pytest-xdist workers, each with a broker and a PostgreSQL of its own. Much of a test's time is
# spent waiting on the broker, not on a core: on 2 cores three workers ran the suite in 1,044 s
# where one took 1,667 s.
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help
.PHONY: help venv install system-deps-up system-deps-test up down status test lint clean distclean

help:
	@echo "make install   create .venv (Python >= 3.11) and install the project with its test tools"
	@echo "make up        start Kafka, migrate, seed and run the four services (Ctrl-C stops them)"
	@echo "make down      stop what 'make up' started (from another terminal)"
	@echo "make status    show what runs"
	@echo "make test      ruff, then the whole test suite (starts its own Kafka and PostgreSQL)"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make clean     stop everything and remove var/ (the Kafka jar cache in ~/.cache/unbind stays)"
	@echo "'make up' and 'make test' first install the system packages they need (as root, on Debian) or name the command that does"

# The interpreter is checked before the venv exists, so an old python3 fails with a clear message.
$(BIN)/python:
	@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ -z "$$version" ]; then \
	  echo "error: '$(PYTHON)' was not found; Python 3.11 or newer is needed. Install it, or name it: make install PYTHON=python3.12" >&2; exit 1; \
	elif ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "error: '$(PYTHON)' is Python $$version; 3.11 or newer is needed. Install one, or name it: make install PYTHON=python3.12" >&2; exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	@touch $@

venv install: $(STAMP)

# Before the venv is made (it needs Python's venv module); make builds prerequisites left to right.
system-deps-up system-deps-test:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash deploy/install-system-deps.sh --ensure $(@:system-deps-%=%)

up: system-deps-up $(STAMP)
	$(BIN)/unbind up $(ARGS)

down: $(STAMP)
	$(BIN)/unbind down

status: $(STAMP)
	$(BIN)/unbind status

lint: $(STAMP)
	$(BIN)/ruff check shared services tests tools
	$(BIN)/ruff format --check shared services tests tools

# pytest exits 5 when it collected no test; make treats that, like any failure, as an error.
test: system-deps-test lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Stops the dev stack and the test infrastructure first: deleting a live broker's or
# PostgreSQL's data directory under its feet would leave orphaned processes behind.
clean:
	@if [ -x $(BIN)/unbind ]; then \
	  $(BIN)/unbind --var-dir var down; \
	  for dir in var/test var/test/gw*; do if [ -d "$$dir" ]; then $(BIN)/unbind --var-dir "$$dir" down; fi; done; \
	fi
	rm -rf var .pytest_cache .ruff_cache
	find shared services tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
