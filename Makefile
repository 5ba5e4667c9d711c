# eval-operator developer commands. Everything a target needs is installed by it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install deps binaries images real-model demo-real test test-unit lint typecheck crds up down demo clean bench-scale

# The local cluster's Python helpers live in hack/localkube (not shipped).
export PYTHONPATH := $(CURDIR)/hack

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools tells of every editable install that it is one (its InformationOnly
	@# notice, pages of it): the filter keeps the install quiet, other warnings still show.
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## deps: system packages the tests use (root, as on CI): Debian's prometheus; containerd,
## runc and the CNI plugins for the real node; mmdebstrap and buildah for its images
DEB_PACKAGES := prometheus containerd runc containernetworking-plugins mmdebstrap buildah
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
		>/dev/null; fi

## test: lint, type-check and run every test tier (building, or reusing, binaries and images first)
test: install deps lint typecheck binaries images real-model
	$(PY) -m pytest

## test-unit: the fast tiers only (pure tables and handler level)
test-unit: install
	$(PY) -m pytest -m "not e2e"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

CRD_KINDS := evaltask evalrun evaltaskconfig clusterevaltaskconfig
## crds: regenerate crds/*.yaml from the pydantic models, and the chart's copies
crds: install
	for kind in $(CRD_KINDS); do $(PY) -m eval_operator.crd $$kind > crds/$$kind.yaml || exit 1; done
	cp $(foreach k,$(CRD_KINDS),crds/$(k).yaml) charts/eval-operator/crds/

## images: build or reuse the real node's images (base, pause, runner, operator)
images: install
	$(PY) -m localkube.images

## real-model: build or reuse the real-model tier's parts: llama.cpp's server with SmolLM2
## (its wheel built from source once, about 12 minutes) and the lm-eval and BFCL images
real-model: install deps
	$(PY) -m localkube.llama
	$(PY) -m localkube.images --examples

## binaries: build or reuse the pinned etcd, kube-apiserver, kube-controller-manager, kubectl, helm
## (`hack/kube-binaries.sh kwok` adds KWOK: bench-scale asks for it itself)
binaries:
	hack/kube-binaries.sh

## up: a local control plane + real node (kubelet, containerd) + operator in the background;
## prints the images on the node, where pods reach the host, and the KUBECONFIG line
up: install deps binaries images
	@if [ -f .local/up.pid ] && kill -0 $$(cat .local/up.pid) 2>/dev/null; then \
		echo "already up: export KUBECONFIG=$(CURDIR)/.local/kubeconfig"; exit 0; fi
	@mkdir -p .local && rm -f .local/ready
	@nohup $(PY) -m localkube up --state .local > .local/up.log 2>&1 & echo $$! > .local/up.pid
	@for i in $$(seq 1 240); do \
		if [ -f .local/ready ]; then break; fi; \
		if ! kill -0 $$(cat .local/up.pid) 2>/dev/null; then cat .local/up.log; exit 1; fi; \
		sleep 0.5; done
	@test -f .local/ready || { echo "not ready after 120s; see .local/up.log"; exit 1; }
	@echo "up: control plane, kubelet, containerd and operator are running (logs: .local/)"
	@sed -n '/^images on the node/,/^pods reach/p' .local/up.log
	@echo "export KUBECONFIG=$(CURDIR)/.local/kubeconfig"

## down: stop everything `make up` started and remove its data
down:
	@if [ -f .local/up.pid ]; then \
		pid=$$(cat .local/up.pid); kill $$pid 2>/dev/null || true; \
		for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
		kill -9 $$pid 2>/dev/null || true; fi
	@rm -rf .local
	@echo "down"

## demo: everything up, two mock model services, examples/demo.yaml, a results table, all down
demo: install deps binaries images
	$(PY) -m localkube demo

## demo-real: lm-eval and BFCL (examples/images) on SmolLM2 served by llama.cpp,
## examples/real.yaml, a results table beside what the tools printed, all down
demo-real: install deps binaries images real-model
	$(PY) -m localkube demo-real

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local

## bench-scale: the operator at thousands of runs on a real control plane and a node KWOK
## simulates (benchmarks/operator_scale.py; ARGS="--scenario a --evaltasks 20" for a short one)
bench-scale: install binaries
	PYTHONPATH=$(CURDIR)/hack:$(CURDIR)/benchmarks $(PY) benchmarks/operator_scale.py $(ARGS)
