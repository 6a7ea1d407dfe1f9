# Set-up is part of every target: a fresh clone needs only python3 (3.10+) and network access to PyPI.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install demo test test-slow test-all lint wheel-check docs bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
# han's distribution was `han` before its rename to han-classifier: an older venv drops it first.
	if $(BIN)/python -m pip show --quiet han >/dev/null 2>&1; then $(BIN)/python -m pip uninstall --quiet --yes han; fi
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install  ## train and evaluate on the BBC News demo corpus
	$(BIN)/han run configs/bbc.yaml --run-dir runs/bbc

test: install  ## the default (offline) suite: every test not marked slow (about 3 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install  ## the tests marked slow: whole runs, subprocess kills, the fuzz pass (about 9 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m slow

test-all: test test-slow  ## both, as .ci/run runs them

lint: install  ## ruff (lint + format check) and mypy, as .ci/run runs them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

wheel-check: install  ## build the wheel, install it alone into a fresh venv, run it from outside the repo (minutes)
	PYTHON=$(BIN)/python .ci/wheel-check

docs: install  ## the documentation site (docs/, mkdocs.yml) -> site/; the reference pages are generated from the code
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install  ## every benchmark, one JSON line each (about 15 minutes on 2 cores)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs site .pytest_cache
