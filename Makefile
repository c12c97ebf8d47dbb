# Two entry points that work on a fresh machine; each makes its own virtual environment in .venv.
#   make run   - install and run `mtlkit bench` on the embedded digits data
#   make test  - install (with test tools) and run ruff, the import layers check, mypy and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test install lint bench-step clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch==2.13.0 first: on these machines it is the CPU build that lies on disk (no multi-GB CUDA download).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/mtlkit bench

# lint-imports checks the layers contract in pyproject.toml ([tool.importlinter]): no import runs back up.
# mypy type-checks the package with mypy.ini's settings (untyped third-party packages taken as Any).
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy src

test: install lint
	$(BIN)/python -m pytest -q

bench-step: install
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) results .pytest_cache
