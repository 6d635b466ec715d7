# One entry point for newcomers and CI: `make run` (the offline default experiment) and `make test`.
# Each target creates .venv and installs the package with its extras on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,biology]"
	touch $(STAMP)

setup: $(STAMP)

# The main job, offline: train the default experiment (digits_astro: scikit-learn digits, about
# a minute on 2 CPU cores) and print its summary; rerunning resumes / re-reports from runs/.
run: $(STAMP)
	$(BIN)/python -m experiments.run

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n 2 --dist worksteal -q -p no:cacheprovider --durations=15

bench: $(STAMP)
	$(BIN)/python -m benchmarks.kernels --json benchmarks/results-kernels.json
	$(BIN)/python -m benchmarks.biology
