# Two commands on a fresh machine (Python 3.11):
#   make demo   convert the bundled sample to Zarr and Parquet on a local Dask cluster
#   make test   lint and run the test suite (what CI runs, after make typecheck)
# and while you work:
#   make test-fast  lint and run the tests not marked slow (pyproject.toml lists the markers), a few minutes
#   make typecheck  mypy on the package (configured in pyproject.toml)
#   make docs       build the docs site (docs/, the README, the API from the docstrings) into site/, offline
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast typecheck install bench docs
demo: install
	$(VENV)/bin/jetstore demo --output demo-output

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-fast: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow"

typecheck: install
	$(VENV)/bin/mypy

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: install
	$(PY) bench/convert.py
	$(PY) bench/read.py
	$(PY) bench/stats.py
	$(PY) bench/sampler.py

install: $(VENV)/.installed

# torch first: the pinned CPU build lies on this machine's disk; an unpinned one pulls a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"  # tests/test_packaging.py builds the wheel without isolation
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@
