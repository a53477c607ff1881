# Two commands for a fresh machine (Python 3.11; Java 17 for the Spark tests):
#   make run    set up .venv and run the Lens feed on embedded services
#   make test   set up .venv and run the quality gates and the test suite
# and the quick loop: make test-fast
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PY_SOURCES := pachlocal lensfeed lensrun pipelines tests bench
SHELL_SCRIPTS := $(wildcard *.sh .ci/run scripts/*.sh)
DOCKERFILES := $(wildcard images/*/Dockerfile images/Dockerfile*)

export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(PY))

.PHONY: venv test test-fast check lint fmt run bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml pachlocal/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e ./pachlocal -e .
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/mypy
	$(if $(SHELL_SCRIPTS),$(VENV)/bin/shellcheck $(SHELL_SCRIPTS))
	$(if $(DOCKERFILES),$(VENV)/bin/hadolint $(DOCKERFILES))

fmt: $(STAMP)
	$(VENV)/bin/ruff format $(PY_SOURCES)
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)

# two workers by default (the suite's files run in parallel, each file's tests in one worker)
PYTEST_WORKERS ?= 2
PYTEST_ARGS := -q -n $(PYTEST_WORKERS) --dist loadfile

test: lint
	$(PY) -m pytest $(PYTEST_ARGS) --durations=15

# the quick loop: no embedded services, no end-to-end runs, no JVM; no heavy module
# fixture either, so the tests are shared out one by one (worksteal), not file by file
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal -m "not slow and not integration and not spark"

check: test

run: $(STAMP)
	$(PY) -m lensrun.demo

SCALE ?= small
DAG_POSTS_tiny := 2000
DAG_POSTS_small := 50000
DAG_POSTS_full := 1000000
bench: $(STAMP)
	$(PY) bench/engine.py --out bench/results/engine-$$(date +%F).json
	$(PY) bench/run.py --scale $(SCALE)
	$(PY) bench/dag.py --posts $(DAG_POSTS_$(SCALE))

clean:
	rm -rf .pachlocal .pachlocal-services .pytest_cache .mypy_cache .ruff_cache
