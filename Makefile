# The two set-up commands: `make demo` and `make test`. Both create .venv
# when it is missing and (re)install the package when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint docs bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[docs]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/rayisolates demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The documentation site (mkdocs.yml, pages in docs/), warnings as errors,
# into site/ (git-ignored). tests/test_docs.py runs the pages' code blocks.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The whole suite, direct channels on (the default); then the transport's
# model and chaos tests again with them off (every message
# over Ray).
test: lint docs
	$(BIN)/pytest
	RAYISOLATES_DIRECT=0 $(BIN)/pytest -p no:cacheprovider $(OVER_RAY_ONLY)

OVER_RAY_ONLY := tests/test_model.py tests/test_chaos.py

# The long runs: chaos with 200 isolates all-to-all and random SIGKILLs
# (SOAK_ISOLATES, SOAK_ROUNDS, SOAK_KILLS, SOAK_SEED change it; about 20 GB
# of memory), then 10,000 isolates spawned and ended (SOAK_SPAWNS) with the
# driver's and supervisor's memory before and after.
soak: $(VENV)/.installed-test
	$(BIN)/pytest -m soak -s -p no:cacheprovider tests/test_chaos.py tests/test_lifecycle_memory.py

bench: $(VENV)/.installed-test
	$(BIN)/rayisolates bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info site
