# The README's two commands: `make local` (set up and serve) and `make test` (set up and test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080

export CDK_HOME := $(CURDIR)/.cdk-home
export CDK_DISABLE_CLI_TELEMETRY := true
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup local test lint format bench synth synth-failover deploy validators clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

local: setup
	$(PY) -m local_endpoint.server --port $(PORT)

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy lambdas local_endpoint routed_bedrock cdk_app app.py tools

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	$(PY) benchmarks/router_overhead.py
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/fault_drill.py --out fault_drill.json
	$(PY) benchmarks/concurrency_drill.py --out concurrency_drill.json
	$(PY) benchmarks/routing_quality.py --out routing_quality.json
	$(PY) benchmarks/cascade_judge.py --out cascade_judge.json
	$(PY) benchmarks/failover_drill.py --out failover_drill.json
	$(PY) benchmarks/stream_overhead.py --out stream_overhead.json
	$(PY) benchmarks/routing_cost.py --json routing_cost.json

validators: setup
	$(PY) tools/generate_validators.py

# SYNTH_CONTEXT: extra context, e.g. SYNTH_CONTEXT="-c routed-bedrock:orchestration=step-functions"
SYNTH_CONTEXT ?=
synth: setup
	npx cdk synth --no-notices -q $(SYNTH_CONTEXT)

# The multi-region failover deployment with the placeholder zone and domain of failover.example.json, linted.
FAILOVER_CONTEXT = $(shell $(PYTHON) -c 'import json; print(" ".join(f"-c {k}={v}" for k, v in json.load(open("failover.example.json")).items()))')
synth-failover: setup
	npx cdk synth --no-notices -q -o cdk.out.failover $(FAILOVER_CONTEXT)
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk.out.failover/*.template.json
	@ls cdk.out.failover/*.template.json

deploy: setup
	npx cdk deploy --no-notices

clean:
	rm -rf $(VENV) node_modules cdk.out cdk.out.failover .cdk-home .pytest_cache .mypy_cache .ruff_cache build dist
