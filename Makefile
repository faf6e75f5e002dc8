# The README's two commands: `make demo` (main job) and `make test` (ruff + test suite).
# Both create or refresh .venv first; torch is pinned before the package so that pip
# takes the CPU wheel instead of pulling a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format bench docs clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/galaxysim search --out report/

test: venv
	$(VENV)/bin/ruff check galaxysim tests benchmarks examples
	$(VENV)/bin/ruff format --check galaxysim tests benchmarks examples
	$(PY) -m pytest -n 2 --dist loadfile

lint: venv
	$(VENV)/bin/ruff check --fix galaxysim tests benchmarks examples
	$(VENV)/bin/ruff format galaxysim tests benchmarks examples

# Sphinx docs into docs/_build/html, warnings as errors. Runs every gallery example;
# GALAXYSIM_DOCS_FAST=1 runs only the quick ones (CI). Installs the docs extra first.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/auto_examples docs/generated
	MPLBACKEND=Agg $(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

bench: venv
	$(PY) benchmarks/bench_search.py

clean:
	rm -rf $(VENV) report build *.egg-info .pytest_cache .ruff_cache docs/_build docs/auto_examples docs/generated
