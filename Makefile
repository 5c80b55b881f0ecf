# carebridge: `make run` (local stack + demo) and `make test` (everything CI runs).
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo uv)
PY := .venv/bin/python
DEVSTACK := $(PY) -m carebridge_devstack
STACK_ENV := .stack/stack.env

.PHONY: docs docs-serve docs-screenshot help install venv stack-up stack-down stack-status lint test test-unit run schemas chaos chaos-cluster bench clean compose-test docker-up docker-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: venv ## Install uv, the locked Python packages, Java/Maven and Chromium when missing (idempotent)
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || { echo "==> installing Java 17 and Maven (apt-get)"; apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "==> installing Chromium for the catalog page test (apt-get)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

venv: ## Only uv and the locked Python packages in .venv (what the Python-only targets need)
	@# Debian's own python3.11 refuses pip installs (PEP 668) unless told; uv is one binary
	@command -v uv >/dev/null 2>&1 || { echo "==> installing uv $(UV_VERSION)"; \
	  python3.11 -m pip install -q "uv==$(UV_VERSION)" 2>/dev/null || \
	  python3.11 -m pip install -q --break-system-packages "uv==$(UV_VERSION)"; }
	@echo "==> syncing Python packages from uv.lock"
	@uv sync --frozen --all-packages --quiet

stack-up: install ## Start Kafka and PostgreSQL as local processes (installs them if missing)
	@$(DEVSTACK) up

stack-down: venv ## Stop the local Kafka and PostgreSQL
	@$(DEVSTACK) down

stack-status: venv ## Show whether the local stack is running
	@$(DEVSTACK) status

lint: install ## ruff, mypy --strict and the import-linter layer contracts (pyproject.toml)
	@echo "==> ruff"
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . >/dev/null
	@echo "==> mypy --strict"
	@.venv/bin/mypy $(foreach p,contracts shared devstack ops $(notdir $(wildcard services/*)) bench,-p carebridge_$(p))
	@.venv/bin/mypy docs/examples
	@echo "==> import-linter"
	@PYTHONPATH=bench .venv/bin/lint-imports --no-logo --no-cache

schemas: install ## Re-export the committed JSON Schemas after a compatible contract change
	@$(PY) -m carebridge_contracts.schema_export

test: install lint ## Start the stack, run every test, stop the stack; non-zero on any failure
	@$(DEVSTACK) up
	@set -a; source $(STACK_ENV); set +a; \
	  $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  $(DEVSTACK) down; exit $$rc

test-unit: install ## Only the tests that need no Kafka or PostgreSQL
	@$(PY) -m pytest -m "not integration and not journey" $(PYTEST_ARGS)

compose-test: install ## docker compose + testcontainers for real (engine, plugin, images made when missing; cached)
	@$(DEVSTACK) compose-test $(COMPOSE_TEST_ARGS)

docker-up: install ## Engine + compose plugin + images for `docker compose up`; prints the variables to export
	@$(DEVSTACK) docker-up

docker-down: venv ## Stop the private Docker engine docker-up started (images stay cached)
	@$(DEVSTACK) docker-down

run: install ## Stack + the four services, a demo patient walked through; Ctrl-C stops all (RUN_ARGS=--service-logs)
	@$(DEVSTACK) run $(RUN_ARGS)

chaos: install ## Fault suite: 2,000 journeys, SIGKILLs, Kafka + PostgreSQL crashes, poison (own stack)
	@$(DEVSTACK) chaos --journeys $(or $(JOURNEYS),2000) --stack-dir .stack-chaos $(CHAOS_ARGS)

chaos-cluster: install ## 3-broker KRaft cluster (RF 3, min.insync 2): one broker SIGKILLed under load
	@$(DEVSTACK) chaos --journeys $(or $(JOURNEYS),2000) --kafka-nodes 3 --stack-dir .stack-chaos-cluster \
	  --kafka-port 28192 --pg-port 24532 --kills-per-service 0 --no-postgres-fault $(CHAOS_ARGS)

bench: install ## Benchmark on its own stack: raw Kafka vs a stage, journey latency, memory (BENCH_ARGS=--quick)
	@PYTHONPATH=bench $(PY) -m carebridge_bench run $(BENCH_ARGS)

clean: ## Stop the stack (when the environment exists) and delete its data
	@if [ -x $(PY) ]; then $(DEVSTACK) down; fi
	@rm -rf .stack

docs: install ## Regenerate the settings table (docs/settings.md) and the event catalog (docs/catalog) from the code
	@$(PY) -m carebridge_ops.settings_doc --write docs/settings.md
	@$(PY) -m carebridge_ops.catalog write

docs-serve: venv ## Serve the event catalog page on http://127.0.0.1:8090/index.html (Ctrl-C stops)
	@$(PY) -m carebridge_ops.catalog serve --port $(or $(PORT),8090)

docs-screenshot: install ## Photograph the catalog page with headless Chromium into docs/catalog/catalog.png
	@$(PY) -m carebridge_ops.catalog screenshot
