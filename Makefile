# The two entry points the README opens with. Each creates or refreshes .venv itself;
# `make test` also installs the Debian packages the tests use (scripts/system-packages.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Some machines set PYTHONDONTWRITEBYTECODE=1: then every process the demo and the tests start
# compiles cd4ml again, and every pytest run (a project's feature tests) re-rewrites its plugins.
RUN := env -u PYTHONDONTWRITEBYTECODE

.PHONY: demo test setup clean system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

EXAMPLE ?= groceries

demo: $(STAMP)
	$(RUN) $(BIN)/cd4ml demo --example $(EXAMPLE) --report build/cd4ml-demo-report.html

# First, so a machine where they cannot be installed stops before the venv is built.
system-packages:
	@bash scripts/system-packages.sh

# 2 cores: the longest files start first (conftest orders them), the rest fill in; xdist would
# otherwise queue files by test count, which puts the one-test demo last.
test: system-packages $(STAMP)
	$(RUN) $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks, one after another (wrk is installed like the tests' packages); a few minutes on 2 cores.
# Results in benchmarks/results/. Extra options: make bench BENCH_ARGS="--project DIR --profile 5"
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	@bash scripts/system-packages.sh wrk:wrk
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/serving.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/request_path.py
	$(BIN)/python benchmarks/explain.py
	$(BIN)/python benchmarks/pipeline.py --sizes 0.1,1
	$(BIN)/python benchmarks/monitoring.py
