# Two commands for a fresh machine (Python 3.11 and Java 17):
#   make run    set up .venv and run the Lens feed on embedded services
#   make test   set up .venv and run the quality gates and the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PY_SOURCES := pachlocal lensfeed pipelines tests bench
SHELL_SCRIPTS := $(wildcard *.sh .ci/run scripts/*.sh)
DOCKERFILES := $(wildcard images/*/Dockerfile images/Dockerfile*)

export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(PY))

.PHONY: venv test check lint fmt run bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
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

test: lint
	$(PY) -m pytest -q

check: test

run: $(STAMP)
	$(PY) -m lensfeed.demo

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
