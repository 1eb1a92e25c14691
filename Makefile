# Every target bootstraps .venv from pyproject.toml on first use; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/drift demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Two workers: much of the suite waits on subprocesses, sockets and namespaces, not the CPU.
PYTEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-check: $(STAMP)
	$(BIN)/python -m benchmarks.check

clean:
	rm -rf $(VENV) build *.egg-info benchmarks/results
