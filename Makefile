# Two commands do all the set-up on a fresh machine: `make up` runs the suite, `make test` tests it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test test-fast lint typecheck bench bootstrap tools clean

bootstrap: $(STAMP) tools

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: FinFaaS needs Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Java (for DynamoDB Local), the DynamoDB Local jar and the npm tools; each step is skipped when done.
tools: $(STAMP)
	$(BIN)/finfaas tools install

up: bootstrap
	$(BIN)/finfaas up

# Lint and types first: a finding fails the run before any test starts.
test: bootstrap
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit tests/property

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: bootstrap
	$(BIN)/finfaas bench coldstart
	$(BIN)/finfaas bench gateway

clean:
	rm -rf $(VENV) .cache .finfaas
