# corehub: `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ROWS ?= 1000000

.PHONY: demo test bench venv constraints up down clean

venv: $(VENV)/.installed

# The venv is built from the pins: requirements.txt names what we use, constraints.txt pins
# every package version (regenerate with `make constraints`).
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: venv
	$(BIN)/corehub demo

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m pipelines.bench --rows $(ROWS)

constraints: venv
	$(BIN)/pip freeze --exclude-editable > constraints.txt

clean:
	-$(BIN)/corehub stop
	rm -rf .corehub
