# `make demo` runs a server fed with a real Grubhub instance; `make test` runs
# every check CI runs. Both set up .venv on first use.

VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SAM_VENV ?= .venv-sam
NPM_TOOLS ?= .tools/npm
ASL_VALIDATOR ?= asl-validator@4.0.0
# template checks need a region, never an account
CHECK_ENV := AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

.PHONY: install demo test lint typecheck unit aws-checks bench clean messages eta screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,aws,cluster]'
	touch $@

$(SAM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet '.[aws-checks]'
	touch $@

$(NPM_TOOLS)/.installed: Makefile
	npm install --silent --no-audit --no-fund --prefix $(NPM_TOOLS) $(ASL_VALIDATOR)
	touch $@

install: $(VENV)/.installed

demo: install
	bash scripts/demo.sh

test: lint typecheck aws-checks unit

lint: install
	$(BIN)/ruff check ordercast tests bench
	$(BIN)/ruff format --check ordercast tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest --cov --cov-report=term

# the AWS deployment: generated ASL up to date and valid, template valid; the
# webhook stack generated from the example declaration up to date and valid
aws-checks: install $(SAM_VENV)/.installed $(NPM_TOOLS)/.installed
	$(BIN)/ordercast export-asl --check
	$(NPM_TOOLS)/node_modules/.bin/asl-validator --json-path deploy/aws/statemachine.asl.json
	cd deploy/aws && $(CHECK_ENV) ../../$(SAM_VENV)/bin/cfn-lint template.yaml
	cd deploy/aws && $(CHECK_ENV) ../../$(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(BIN)/ordercast webhooks export-aws --rules deploy/aws/webhooks.example.json --output deploy/aws/webhooks.example.stack.json --check
	cd deploy/aws && $(CHECK_ENV) ../../$(SAM_VENV)/bin/cfn-lint webhooks.example.stack.json
	cd deploy/aws && $(CHECK_ENV) ../../$(SAM_VENV)/bin/sam validate --lint --template webhooks.example.stack.json

bench: install
	$(BIN)/python bench/fanout.py

# gettext catalogs (docs/languages.md): extract marked strings, merge them into
# each language's .po, compile the .mo files that ship
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-default-keywords --no-location \
		--sort-output --project ordercast --version 0.1.0 \
		--copyright-holder "ordercast authors" -o ordercast/locale/ordercast.pot .
	$(BIN)/pybabel update -i ordercast/locale/ordercast.pot -d ordercast/locale \
		-D ordercast --width 88 --ignore-obsolete
	$(BIN)/pybabel compile -d ordercast/locale -D ordercast --statistics

# docs/tracking.png and docs/ops.png, taken from a real replay
screenshots: install
	$(BIN)/python scripts/screenshots.py

# retrain the ETA model (fixed seed) and print its held-out error
eta: install
	$(BIN)/ordercast train-eta

clean:
	rm -rf $(VENV) $(SAM_VENV) .tools run .pytest_cache .mypy_cache .ruff_cache .coverage
