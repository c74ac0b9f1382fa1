# nimbus_api developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=
LINT_PATHS := src tests $(wildcard bench) $(wildcard scripts)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/nimbus: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	@touch $@

.PHONY: install
install: $(BIN)/nimbus ## Create .venv and install the package with dev and embedded extras

.PHONY: run
run: install ## Run API (port 8000) + worker; embedded Postgres/Redis when none is configured
	$(BIN)/nimbus dev

.PHONY: test-deps
test-deps: ## Install the system packages the tests need (Dovecot, pg_dump) when missing
	@scripts/install-test-deps

.PHONY: test
test: install test-deps ## Run the whole test suite against real Postgres, Redis, SMTP, IMAP and DNS servers
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy --strict on src/
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

.PHONY: check
check: lint test ## Lint, type-check and test

.PHONY: format
format: install ## Format and auto-fix
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

.PHONY: contract
contract: install ## Property-based API contract test: schemathesis against a real `nimbus api` (fresh database)
	$(PY) scripts/contract.py

.PHONY: openapi
openapi: install ## Export the OpenAPI document to openapi/openapi.json
	$(BIN)/nimbus openapi --out openapi/openapi.json

.PHONY: migration
migration: install ## New alembic revision from model changes: make migration m="what changed"
	$(BIN)/alembic revision --autogenerate -m "$(m)"

.PHONY: bench
bench: install test-deps ## Run the benchmarks (bench/bench_*.py, classify included) and print their figures
	@for f in bench/bench_*.py; do [ -e "$$f" ] || continue; echo "== $$f"; start=$$(date +%s); \
		$(PY) "$$f" || exit 1; echo "== $$f took $$(( $$(date +%s) - start )) s"; done

.PHONY: clean
clean: ## Remove caches (keeps .venv and .nimbus)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
