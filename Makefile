# novakit: one entry point for set-up, checks, the local stack and benchmarks.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON_VERSION := $(shell cat .python-version)
# The interpreter the venv is made from: pyenv's (honours .python-version), else pythonX.Y on PATH.
BASE_PYTHON ?= $(shell pyenv which python 2>/dev/null || command -v python$(PYTHON_VERSION))

.PHONY: help install lint typecheck unit test dev emulator bench fuzz soak cluster-hog lock clean synth preflight deploy destroy bootstrap infra-test chromium browser-test

help:
	@echo "make help       this list"
	@echo "make dev        the local stack on http://127.0.0.1:8080/ (PORT=... for another port); its"
	@echo "                emulator hears the tools' examples and speaks offline (no AWS account)."
	@echo "                Installs only what the stack needs (requirements/dev-stack.txt)"
	@echo "make emulator   the Bedrock emulator alone (novakit emulator)"
	@echo "make install    create .venv and install every locked dependency, development tools too"
	@echo "                (the targets below but dev, emulator, help and chromium do it)"
	@echo "make test       install what is missing, then lint, type check and all tests"
	@echo "                (the cluster tests beside a CPU hog: CPU_HOG=2 spinners, CPU_HOG=0 for none)"
	@echo "make lint       ruff check and format check"
	@echo "make typecheck  mypy"
	@echo "make unit       the pure-logic tests (tests/unit)"
	@echo "make fuzz       the property-based fuzz tests (tests/security) at 100,000+ cases"
	@echo "make cluster-hog  the cluster tests beside a CPU hog (RUNS=20 for twenty in a row)"
	@echo "make soak       the cluster ownership property over many random fault schedules"
	@echo "                (SOAK_EXAMPLES=25, about a minute each; beside a CPU hog)"
	@echo "make browser-test  the browser client's tests in Chromium (installs Debian's chromium)"
	@echo "make infra-test the CDK stack's tests (tests/infra)"
	@echo "make chromium   install Debian's chromium for the browser tests, if missing"
	@echo "make bench      run the benchmarks (not part of make test); python -m bench NAME for one"
	@echo "make lock       re-resolve requirements/lock.txt from pyproject.toml and requirements/dev.in"
	@echo "                (and runtime.txt, dev-stack.txt from it)"
	@echo "make synth      synthesize the CloudFormation template into cdk.out/ (no AWS account needed)"
	@echo "make bootstrap  CDK bootstrap of your AWS account and Region (once, before make deploy)"
	@echo "make preflight  check credentials, Docker, bootstrap and model access before a deploy"
	@echo "make deploy     deploy the voice agent to your AWS account (see docs/deploy.md)"
	@echo "make destroy    delete the deployed stack"
	@echo "make clean      remove .venv and the mypy, ruff and pytest caches"

$(PY):
	@echo "[venv] creating .venv with $(BASE_PYTHON)"
	@test -n "$(BASE_PYTHON)" || { echo "error: Python $(PYTHON_VERSION) not found (install it with pyenv, or set BASE_PYTHON=/path/to/python$(PYTHON_VERSION))"; exit 1; }
	@$(BASE_PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' || { echo "error: $(BASE_PYTHON) is older than 3.12, which the Bedrock SDK requires"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) requirements/lock.txt pyproject.toml
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	@touch $@

install: $(STAMP)

# What the local stack needs (make dev, make emulator): the runtime, the emulator's offline speech
# and the tools' Powertools at the lock's versions, not the development set. A full install
# (make install) already holds it.
DEV_STAMP := $(VENV)/.dev-stack
$(DEV_STAMP): $(PY) requirements/dev-stack.txt pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt requirements/dev-stack.txt ]; then touch $@; exit 0; fi; \
	set -o pipefail; \
	echo "[deps] installing the local stack's $$(grep -c '==' requirements/dev-stack.txt) locked packages (make install adds the development set)"; \
	$(PY) -m pip install --disable-pip-version-check --no-input -r requirements/dev-stack.txt \
	  | { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; } | sed -u 's/^/       /'; \
	echo "[novakit] installing novakit itself (editable)"; \
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . && touch $@

PY_DIRS := $(wildcard runtime tests bench examples stacks tools app.py)

# The CDK CLI, pinned in package.json / package-lock.json (node_modules/ is not committed).
NODE_STAMP := node_modules/.installed
# jsii (aws-cdk-lib's bridge to node) warns loudly on older node majors; the app still works.
CDK_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
	JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 CDK_DISABLE_CLI_TELEMETRY=true
CDK := $(CDK_ENV) npx --no-install cdk

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

# The cluster tests (tests/cluster) run beside a CPU hog, CPU_HOG processes spinning on the cores
# (CPU_HOG=0 for none): ownership must hold on a busy machine, in CI too. Other tests run as usual.
CPU_HOG ?= 2

test: lint typecheck $(NODE_STAMP) chromium
	NOVAKIT_CPU_HOG=$(CPU_HOG) $(VENV)/bin/pytest -q

dev: $(DEV_STAMP)
	@echo "[start] novakit dev $(if $(PORT),--port $(PORT))"
	@$(VENV)/bin/novakit dev $(if $(PORT),--port $(PORT))

emulator: $(DEV_STAMP)
	$(VENV)/bin/novakit emulator

# CDK_ARGS passes options through, e.g. make deploy CDK_ARGS="-c region=us-west-2".
# synth needs no AWS account, credentials or Docker engine, and fails on a cdk-nag finding.
synth: $(STAMP) $(NODE_STAMP)
	AWS_EC2_METADATA_DISABLED=true $(CDK) synth --quiet --no-notices --no-ec2creds --no-version-reporting $(CDK_ARGS)

bootstrap: $(STAMP) $(NODE_STAMP)
	$(CDK) bootstrap $(CDK_ARGS)

# The pre-flight (stacks/preflight.py) checks credentials, Docker (linux/arm64), the bootstrap
# stack and model access first, and says what to do; SKIP_PREFLIGHT=1 skips it.
preflight: $(STAMP)
	$(PY) -m stacks.preflight $(CDK_ARGS)

deploy: $(STAMP) $(NODE_STAMP)
	@if [ "$(SKIP_PREFLIGHT)" != "1" ]; then $(PY) -m stacks.preflight $(CDK_ARGS); fi
	$(CDK) deploy --outputs-file cdk.out/outputs.json $(CDK_ARGS)

destroy: $(STAMP) $(NODE_STAMP)
	$(CDK) destroy $(CDK_ARGS)

# Debian's chromium for the browser client's tests (tests/browser), installed when missing.
# Without apt (or without root) it says so and the browser tests skip, naming the reason.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium could not be installed; the browser tests (tests/browser) will skip"

browser-test: $(STAMP) chromium
	$(VENV)/bin/pytest tests/browser -q

infra-test: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/pytest tests/infra tests/unit/test_tool_manifest.py -q

bench: $(STAMP)
	$(PY) -m bench

# The fuzz tests (tests/security/test_fuzz_*.py) with the "fuzz" Hypothesis profile
# (tests/security/conftest.py): a quarter of an hour, so not part of make test, which runs the same
# properties on a small sample. The statistics give the number of cases per property.
fuzz: $(STAMP)
	NOVAKIT_FUZZ_PROFILE=fuzz $(VENV)/bin/pytest $(wildcard tests/security/test_fuzz_*.py) -q \
	  --timeout=3600 --hypothesis-show-statistics

# The ownership property (tests/cluster/test_ownership.py) over many random schedules of kills,
# drains, stalls and a slow directory, beside a CPU hog; about a minute per schedule.
SOAK_EXAMPLES ?= 25
soak: $(STAMP)
	NOVAKIT_CPU_HOG=2 NOVAKIT_OWNERSHIP_EXAMPLES=$(SOAK_EXAMPLES) $(VENV)/bin/pytest -q --timeout=0 \
	  tests/cluster/test_ownership.py::test_one_owner_at_a_time_whatever_happens \
	  --hypothesis-show-statistics

# The cluster tests (tests/cluster) beside two processes spinning on the cores, RUNS times in a
# row, stopping at the first failure.
RUNS ?= 1
cluster-hog: $(STAMP)
	@for run in $$(seq 1 $(RUNS)); do echo "cluster tests beside a CPU hog: run $$run of $(RUNS)"; \
	  NOVAKIT_CPU_HOG=2 $(VENV)/bin/pytest -q -p no:randomly tests/cluster || exit 1; done

lock: $(PY)
	$(PY) -m venv --clear .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e '.[emulator]' -r requirements/dev.in
	{ echo "# Generated by 'make lock' from pyproject.toml and requirements/dev.in: do not edit."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^novakit'; } > requirements/lock.txt
	rm -rf .venv-lock
	# The bridge image's pins: the package's own dependencies only, at the versions above.
	$(PY) -m venv --clear .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet --constraint requirements/lock.txt .
	{ echo "# Generated by 'make lock': the runtime dependencies (pyproject.toml) at lock.txt's versions."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^novakit'; } > requirements/runtime.txt
	rm -rf .venv-lock build
	# make dev's: the runtime, the emulator extra and the tools' Powertools, at the same versions.
	$(PY) -m venv --clear .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet --constraint requirements/lock.txt '.[emulator]' 'aws-lambda-powertools[validation]' twilio
	{ echo "# Generated by 'make lock': what the local stack (make dev) needs, at lock.txt's versions: the"; \
	  echo "# runtime, the emulator's offline speech (the emulator extra), the tools' Powertools and"; \
	  echo "# the twilio package (the local gateway checks phone calls' signatures with it)."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^novakit' | sort -f; } > requirements/dev-stack.txt
	rm -rf .venv-lock build

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
