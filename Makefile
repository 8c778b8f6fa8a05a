# Two commands on a fresh machine: `make demo` (the main job) and `make test` (lint, types and
# the suite). Each creates ./.venv and installs camkit (with the dev tools for `make test`) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/camkit demo

test: install
	$(VENV)/bin/ruff check camkit tests benchmarks docs
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) camkit-demo .pytest_cache
