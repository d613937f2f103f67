# corehub: `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ROWS ?= 1000000
FEEDS ?= cutru,dkkd,land
AIRFLOW_PORT ?= 8080

.PHONY: demo test bench venv constraints up down browser clean

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

test: venv browser
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m pipelines.bench --rows $(ROWS) --feeds $(FEEDS)

# Local Airflow: standalone (UI on http://127.0.0.1:$(AIRFLOW_PORT), scheduler, dag-processor,
# triggerer) against the embedded warehouse, with every feed's DAG unpaused and its inbox created.
up: venv
	$(BIN)/python -m pipelines.ops up --port $(AIRFLOW_PORT)

down:
	$(BIN)/python -m pipelines.ops down

# Headless Chromium for tests/test_ui.py: Debian's package, installed when missing and possible
# (root with apt-get, about a minute); otherwise that test is skipped and says why.
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$COREHUB_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (for tests/test_ui.py)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
			|| echo "could not install chromium: tests/test_ui.py will be skipped"; \
	else \
		echo "no chromium here (Debian: apt-get install chromium): tests/test_ui.py will be skipped"; \
	fi

constraints: venv
	$(BIN)/pip freeze --exclude-editable > constraints.txt

clean:
	-$(BIN)/corehub stop
	rm -rf .corehub
