# One target per task. `make run` and `make test` are the two commands the README promises;
# both set up .venv first. Kafka needs Java 17+ and Maven; PostgreSQL comes from a wheel.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Not exported: the test session picks its own home (.baton-test) unless BATON_HOME is set.
DEV_HOME := $${BATON_HOME:-$(CURDIR)/.baton}
TEST_HOME := $(CURDIR)/.baton-test

.PHONY: help setup run test test-unit lint typecheck bench bench-quick infra-up infra-down clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv (Python 3.11) and install Baton with its dev tools

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

run: setup  ## start Kafka, PostgreSQL and every Baton process
	$(BIN)/baton run

test: setup  ## every test; integration tests start their own Kafka and PostgreSQL
	$(BIN)/pytest

test-unit: setup  ## the fast, pure tests only
	$(BIN)/pytest tests/unit

lint: setup  ## ruff (rules and formatting) and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup  ## mypy --strict over services, projections and tests
	$(BIN)/mypy

bench: setup  ## the benchmark and the peers; rewrites docs/benchmarks.md (about 15 min)
	$(BIN)/python -m bench

bench-quick: setup  ## small sizes, Baton only: a smoke run of the benchmark (about 3 min)
	$(BIN)/python -m bench --quick --no-peers --no-report --out .baton-bench/quick.json

infra-up: setup  ## start the dev Kafka and PostgreSQL in the background (data in .baton/)
	PYTHON=$(BIN)/python bash infra/kafka/start.sh
	PYTHON=$(BIN)/python bash infra/kafka/wait.sh
	PYTHON=$(BIN)/python bash infra/postgres/start.sh

infra-down: setup  ## stop the dev Kafka and PostgreSQL
	PYTHON=$(BIN)/python bash infra/kafka/stop.sh
	PYTHON=$(BIN)/python bash infra/postgres/stop.sh

clean: infra-down  ## stop infra and delete .baton/ (and a leftover test stack in .baton-test/)
	BATON_HOME=$(TEST_HOME) PYTHON=$(BIN)/python bash infra/kafka/stop.sh
	BATON_HOME=$(TEST_HOME) PYTHON=$(BIN)/python bash infra/postgres/stop.sh
	rm -rf -- "$(DEV_HOME)" "$(TEST_HOME)"
