# lambdaface: `make demo` runs the seed example on the local stack, `make test` runs every test.
SHELL := /bin/bash
PY312 ?= $(shell PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12)
VENV := .venv
PY := $(VENV)/bin/python
FACES ?= $(abspath ../shared/faces)
export LAMBDAFACE_FACES := $(FACES)

.PHONY: install test demo bench bench-engine clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PY312)" || { echo "python3.12 not found (try: pyenv install 3.12.1)"; exit 1; }
	$(PY312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest

bench-engine: install
	$(PY) benchmarks/bench_engine.py --faces $(FACES)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
