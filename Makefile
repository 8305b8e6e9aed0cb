# One command sets everything up and runs the main job; one sets everything up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first, so that nothing pulls a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/python -m pytest tests --nbmake tutorials --nbmake-timeout=900

lint: setup
	$(BIN)/python -m ruff check src tests scripts benchmarks

clean:
	rm -rf $(VENV) demo_output .pytest_cache
