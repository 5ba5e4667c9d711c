# eval-operator developer commands. Everything a target needs is installed by it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-unit lint typecheck crds check-crds clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## test: lint, type-check and run every test tier
test: install lint typecheck
	$(PY) -m pytest

## test-unit: the fast tiers only (pure tables and handler level)
test-unit: install
	$(PY) -m pytest -m "not e2e"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

## crds: regenerate crds/evaltask.yaml from the pydantic models
crds: install
	$(PY) -m eval_operator.crd > crds/evaltask.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local
