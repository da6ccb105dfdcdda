# The two set-up commands: `make demo` and `make test`. Both create .venv
# when it is missing and (re)install the package when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint docs bench soak clean sdist-check test-min-ray

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The demo runs the examples, which import the examples extra (httpx, orjson).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[examples]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[docs]'
	touch $@

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
test: lint docs sdist-check test-min-ray
	$(BIN)/pytest
	RAYISOLATES_DIRECT=0 $(BIN)/pytest -p no:cacheprovider $(OVER_RAY_ONLY)

OVER_RAY_ONLY := tests/test_model.py tests/test_chaos.py

# The distributions as a user gets them: wheel and sdist built, checked by twine,
# then the sdist unpacked in a temp folder and installed in a fresh virtualenv
# there, and its unit tests run from the unpacked copy against that install (the
# unpacked package folder is removed, so the tests cannot import it instead).
# Needs the package index (or pip's cache) for the build backend and the deps.
sdist-check: $(VENV)/.installed-test
	@set -eu; work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	$(BIN)/python -m build --outdir "$$work/dist" . > "$$work/build.log" 2>&1 \
		|| { cat "$$work/build.log"; exit 1; }; \
	$(BIN)/twine check --strict "$$work"/dist/*; \
	tar -xzf "$$work"/dist/*.tar.gz -C "$$work"; \
	unpacked=$$(echo "$$work"/rayisolates-*/); \
	rm -r "$$unpacked/rayisolates"; \
	$(PYTHON) -m venv "$$work/venv"; \
	"$$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
		"$$(echo "$$work"/dist/*.tar.gz)" pytest pytest-timeout; \
	cd "$$unpacked" && "$$work/venv/bin/python" -c \
		'import rayisolates, sys; assert sys.prefix in rayisolates.__file__, rayisolates.__file__'; \
	"$$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit

# The lowest Ray this package supports (the bound in pyproject.toml): in
# .venv-minray, that Ray with the package, the unit tests and a smoke run
# (tests/smoke.py: run, spawn and a port round trip, a pool, a worker, on a Ray
# of its own). docs/ray-apis.md says how the bound was found.
MIN_RAY := 2.55.1
MINRAY := .venv-minray
$(MINRAY)/.installed-$(MIN_RAY): pyproject.toml
	rm -rf $(MINRAY)
	$(PYTHON) -m venv $(MINRAY)
	$(MINRAY)/bin/python -m pip install --quiet --disable-pip-version-check \
		'ray[default]==$(MIN_RAY)' -e . 'pytest>=8' 'pytest-timeout>=2.3'
	touch $@

test-min-ray: $(MINRAY)/.installed-$(MIN_RAY)
	$(MINRAY)/bin/python -c 'import ray; assert ray.__version__ == "$(MIN_RAY)", ray.__version__'
	$(MINRAY)/bin/pytest -q -p no:cacheprovider tests/unit
	$(MINRAY)/bin/python -m tests.smoke

# The long runs: chaos with 200 isolates all-to-all and random SIGKILLs
# (SOAK_ISOLATES, SOAK_ROUNDS, SOAK_KILLS, SOAK_SEED change it; about 20 GB
# of memory), then 10,000 isolates spawned and ended (SOAK_SPAWNS) with the
# driver's and supervisor's memory before and after.
soak: $(VENV)/.installed-test
	$(BIN)/pytest -m soak -s -p no:cacheprovider tests/test_chaos.py tests/test_lifecycle_memory.py

bench: $(VENV)/.installed-test
	$(BIN)/rayisolates bench

clean:
	rm -rf $(VENV) $(MINRAY) .pytest_cache .mypy_cache .ruff_cache *.egg-info site
