# Two commands for a fresh machine: `make run` (quick start) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUICKSTART_DATA ?= runs/data/digits
QUICKSTART_JOB ?= runs/quickstart

.PHONY: venv run test test-fast lint bench clean

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

run: venv
	$(BIN)/vizsla datasets create digits $(QUICKSTART_DATA)
	$(BIN)/vizsla train --config examples/digits.yaml --data $(QUICKSTART_DATA) --output $(QUICKSTART_JOB) --overwrite
	$(BIN)/vizsla jobs describe $(QUICKSTART_JOB)

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
