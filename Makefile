# The README's commands. Each target creates .venv and installs the project with all extras first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-attribution bench-scale lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/mlflow_overhead.py
	$(BIN)/python benchmarks/dvc_overhead.py
	$(BIN)/python benchmarks/reports.py

# measured attribution: orchestration overhead, -j 2, and a local Ray cluster against -j 1 (about 15 minutes)
bench-attribution: $(STAMP)
	$(BIN)/python -m benchmarks.attribution
	$(BIN)/python -m benchmarks.attribution_ray

# a million records: append, verify, incremental verify, reports and git at 10k, 100k and 1M, two rounds each;
# JSON in bench-scale/ (about an hour on 2 cores)
bench-scale: $(STAMP)
	mkdir -p bench-scale
	$(BIN)/python benchmarks/run.py --sizes 10000 100000 1000000 --rounds 2 --json bench-scale/core.json
	$(BIN)/python benchmarks/incremental.py --records 1000000 --json bench-scale/incremental.json
	$(BIN)/python benchmarks/reports.py --sizes 10000 100000 1000000 --rounds 2 --json bench-scale/reports.json
	$(BIN)/python -m benchmarks.git_scale --sizes 10000 100000 1000000 --rounds 2 --json bench-scale/git.json

lint: $(STAMP)
	$(BIN)/ruff check openledger openledger_cli mlflow_plugin dvc_hooks tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
