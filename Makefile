# Two commands on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Both create the virtual environment they need in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out

# Every package at its version in constraints/lock.txt (README: "Checking the floors").
$(VENV)/.installed: pyproject.toml constraints/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/lock.txt -e ".[test,experiments]"
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	$(PY) -m experiments.main --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 tests
