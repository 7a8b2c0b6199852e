# Vantage — `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup proto proto-check demo demo-eval test test-fast lint bench clean chaos k8s-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

proto: setup  ## regenerate gen/ and the stubs vendored in clients/python from protos/
	$(BIN)/python scripts/gen_protos.py
	$(BIN)/python clients/python/scripts/gen.py

demo: setup  ## start the stack on loopback, research examples/companies.csv, stop the stack
	$(BIN)/vantage demo examples/companies.csv

demo-eval: setup  ## start the stack on loopback, evaluate Together AI on examples/questions.txt (480 question runs: 20 questions x 4 models x 2 locations x 3 samples), print the report and write its HTML
	$(BIN)/vantage demo-eval examples/questions.txt

test: setup  ## the whole suite (PostgreSQL tests skip when no server answers, unless VANTAGE_REQUIRE_POSTGRES=1)
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not postgres and not e2e"

chaos: setup  ## provider-fault chaos run at full size (200 companies, provider-like latencies) + the large RPC fuzz run + the multi-replica kill run (1,000 companies); prints its figures
	VANTAGE_CHAOS_FULL=1 VANTAGE_SCALE_COMPANIES=1000 $(BIN)/python -m pytest -q -s -m chaos tests/chaos tests/infra/test_fuzz_rpcs.py tests/scale/test_scale_replicas_chaos.py

k8s-check: setup  ## render deploy/k8s (kubectl kustomize) and validate every object against the Kubernetes schemas offline
	VANTAGE_REQUIRE_KUSTOMIZE=1 $(BIN)/python -m pytest -q tests/deploy

lint: setup  ## ruff, the import contracts (.importlinter), mypy (pyproject [tool.mypy]), buf lint + buf breaking vs. the last landing (protos/buf.yaml)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/python scripts/check_protos.py

bench: setup  ## performance figures vs. their bounds, < 10 min on 2 cores; last stdout line = JSON (docs/benchmarks.md)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache vantage.db vantage.db-*
