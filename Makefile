# spotrun — the two commands a new user needs: `make test` and `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-unit test-integration test-e2e lint demo bench bench-s3 clean crd
.PHONY: binaries binaries-s3 cluster-up cluster-down lint-hack

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --progress-bar off -e '.[dev,examples,operator]'
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-unit: venv
	$(VENV)/bin/pytest -m unit

test-integration: venv binaries-s3
	$(VENV)/bin/pytest -m integration

test-e2e: venv binaries
	$(VENV)/bin/pytest -m e2e

# The local real environment (hack/README.md): binaries built once into ~/.cache/spotrun.
binaries:
	hack/build-binaries

binaries-s3:
	hack/build-binaries versitygw

cluster-up: venv binaries
	hack/cluster up

cluster-down:
	hack/cluster down

lint-hack: venv
	cd hack && ../$(VENV)/bin/mypy --strict -p localcluster

test: lint test-unit test-integration test-e2e

demo: venv
	$(VENV)/bin/spotrun chaos --kills 3 --sigkill 2 --seed 7 -- $(PY) examples/digits/train.py --epochs 4

crd: venv
	$(PY) -m spotrun_operator.crd manifests/crd.yaml

bench: venv
	$(PY) bench/checksum_speed.py && $(PY) bench/checkpoint_bench.py

bench-s3: venv binaries-s3
	$(PY) bench/s3_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
