# spotrun — the two commands a new user needs: `make test` and `make demo`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test test-unit test-integration test-e2e lint demo demo-local bench bench-s3 clean crd
.PHONY: binaries binaries-s3 binaries-lint binaries-entrypoint cluster-up cluster-down lint-hack manifests
.PHONY: demo-process cluster-up-process cluster-down-process

venv: $(STAMP)

# torch from PyPI comes with its CUDA wheels: the venv takes about 6 GiB; fail early, not in pip.
$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); if [ "$$free" -lt 8 ]; then \
	  echo "make venv: $$free GiB free under $$(pwd); the venv (torch and its CUDA wheels) needs about 8 GiB: free some disk" >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --progress-bar off -e '.[dev,examples,operator,torch,s3]'
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-unit: venv
	$(VENV)/bin/pytest -m unit

test-integration: venv binaries-s3 binaries-lint binaries-entrypoint
	$(VENV)/bin/pytest -m integration --durations=10

test-e2e: venv binaries
	$(VENV)/bin/pytest -m e2e --durations=10

# The local real environment (hack/README.md): binaries built once into ~/.cache/spotrun.
binaries:
	hack/build-binaries

binaries-s3:
	hack/build-binaries versitygw

# actionlint for tests/integration/test_workflows.py (a small Go build, ~40 s cold).
binaries-lint:
	hack/build-binaries actionlint

# spotrun-exec (entrypoint/, Go standard library only) for tests/integration/test_entrypoint.py:
# seconds once the Go build cache holds the standard library, about 2.5 min on an empty one.
binaries-entrypoint:
	hack/build-binaries entrypoint

# The local cluster (hack/cluster, hack/README.md): kind with real kubelets in Docker; the
# kind prerequisites are built first (hack/kind/prebuild, ~22 min cold, seconds warm).
cluster-up: venv binaries
	hack/kind/prebuild wait
	hack/cluster up

cluster-down:
	hack/cluster down

# The process node instead: a kubelet stand-in of host processes, up in seconds (the e2e tier's).
cluster-up-process: venv binaries
	hack/cluster --process up

cluster-down-process:
	hack/cluster --process down

lint-hack: venv
	cd hack && ../$(VENV)/bin/mypy --strict -p localcluster

# kind (hack/README.md, "kind"): the Docker engine, a debootstrapped base image and the node
# image's binaries, cached in ~/.cache/spotrun; the kind tier is the last tier of `make test`.
.PHONY: kind-prereqs kind-engine-down kind-node-image kind-up kind-down kind-images test-kind
kind-prereqs:
	hack/kind/prereqs

# The node image (offline) and a cluster on it: 1 control plane + 1 worker. kind-down removes
# the cluster, its network and state, and stops the dockerd hack/kind started.
kind-node-image: kind-prereqs
	hack/kind/node-image

kind-up: kind-prereqs
	hack/kind/up

kind-down:
	hack/kind/down --engine

# The operator, sidecar and trainer images from their Dockerfiles on local bases (a Python base
# from the Debian rootfs, torch from PyPI, the host's Go): spotrun.local/<name>:<version>-<hash>.
kind-images:
	hack/kind/images

kind-engine-down:
	hack/kind/docker-engine down

# The kind tier: builds what is missing (hack/kind/prebuild: the Docker engine, the Debian base,
# the node's Go parts, the node image, the images, the registry), brings the cluster up
# (--on-demand 1 --spot 1) and removes it at the end; images and the registry's volume stay
# as the cache.
# Karpenter and KWOK (~6 min of Go builds cold, for tests/kind/test_karpenter_on_kind.py only)
# build in the background as the kind tier starts, at nice 19 while its tests mostly wait; the
# test waits for them through build-parts' lock. In the prebuild they would lengthen the path to
# the kind tier on a cold machine (the prebuild takes as long as the tiers it runs beside).
test-kind: venv binaries binaries-s3
	hack/kind/prebuild wait
	setsid nohup hack/kind/build-parts karpenter kwok >/dev/null 2>&1 </dev/null &
	$(VENV)/bin/pytest -m kind tests/kind --durations=25

# Starts hack/kind/prebuild in the background (after the control plane's Go build, whose cache
# the node's parts share), so that a cold machine builds the kind tier's prerequisites while the
# integration and e2e tiers run; test-kind waits for it.
.PHONY: kind-prebuild-start
kind-prebuild-start:
	hack/kind/prebuild start

# One target at a time, in the order given: the background prebuild must start after the
# control plane's build and before the tiers it runs beside (make -j would break that).
.NOTPARALLEL:

test: lint test-unit binaries binaries-s3 binaries-lint binaries-entrypoint kind-prebuild-start \
	test-integration test-e2e test-kind

# The demo on kind (hack/localcluster/kinddemo.py): hack/cluster up (reused when up), helm
# install of the pushed images, the example job, a notice then an abrupt loss, the summary and
# demo-report.png; removes what it started unless SPOTRUN_KIND_KEEP=1. hack/kind/prebuild
# stops the Docker engine it started; the demo then starts it and, having started it, stops it
# at the end. demo-process: the same on the process node (hack/localcluster/demo.py), in a
# minute. demo-local: the same kind of chaos without Kubernetes.
demo: venv binaries
	hack/kind/prebuild wait
	hack/demo

demo-process: venv binaries
	hack/demo --process

demo-local: venv
	$(VENV)/bin/spotrun chaos --kills 3 --sigkill 2 --seed 7 -- $(PY) examples/digits/train.py --epochs 4

# The CRDs are generated into manifests/ and copied into the chart (a test checks the copies).
crd: venv
	$(PY) -m spotrun_operator.crd manifests/crd.yaml
	$(PY) -m spotrun_operator.reference docs/reference.md
	cp manifests/crd.yaml charts/spotrun/files/crd.yaml
	cp manifests/kopf-peering-crd.yaml charts/spotrun/crds/kopf-peering-crd.yaml

# manifests/{install,rbac,operator}.yaml rendered from charts/spotrun (a test fails when stale).
manifests: venv crd chart-readme
	$(PY) charts/generate_manifests.py

# The values table of charts/spotrun/README.md from values.yaml and values.schema.json (it
# also names values without a `# --` comment or a schema entry; a unit test fails on either).
.PHONY: chart-readme
chart-readme: venv
	$(PY) charts/values_doc.py

bench: venv
	$(PY) bench/checksum_speed.py && $(PY) bench/checkpoint_bench.py

bench-s3: venv binaries-s3
	$(PY) bench/s3_bench.py

# BENCH_JOBS=200 make bench-operator: fewer jobs than the default 1000 (quicker, ~5 min).
BENCH_JOBS ?= 1000
bench-operator: venv binaries
	$(PY) bench/operator_bench.py --jobs $(BENCH_JOBS)

bench-slow-status: venv binaries
	$(PY) bench/slow_status_bench.py

# Resume after a preemption, phase by phase (bench/RESUME_RESULTS.md); its own cluster and S3.
bench-resume: venv binaries
	$(PY) bench/resume_bench.py

# The same on kind's real kubelets, 10 preemptions of a worker (bench/RESUME_KIND_RESULTS.md,
# ~15 min on a warm cache); the cluster of hack/cluster up, reused when it is up.
.PHONY: bench-resume-kind
bench-resume-kind: venv binaries
	hack/kind/prebuild wait
	$(PY) bench/resume_kind_bench.py

# Goodput on a spot trace through the real operator and trainer, the notice used vs saving at
# once (bench/GOODPUT_RESULTS.md, ~12 min); GOODPUT_ARGS=--quick: one short run, nothing written.
.PHONY: bench-goodput
GOODPUT_ARGS ?=
bench-goodput: venv binaries
	PYTHONPATH=bench $(PY) -m goodput $(GOODPUT_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
