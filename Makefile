# ai-workbench: `make up` runs the platform, `make test` runs the test suite.
# Both install what they need first (apt packages as root, a virtualenv, npm packages, images).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CONTAINERS_CONF := $(CURDIR)/spawner/containers.conf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_STAMP := .run/apt-updated
# test processes: each takes whole test modules and starts its own hubs; most of a test's time
# is spent waiting on containers, so two processes keep both cores of a 2-core machine busy
TEST_WORKERS ?= 2

.PHONY: up test system test-system venv node images images-all lint lint-js labextension format bench clean help

help:
	@echo "make up      install what is missing, then run the platform on http://127.0.0.1:8000"
	@echo "make test    install what is missing, then run lint and the whole test suite"
	@echo "make images  build the catalog's default image (images-all: every engine image)"
	@echo "make bench   run the benchmarks"

up: system venv node images
	$(BIN)/workbench up

test: system test-system venv node images-all lint-js
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -v -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=40 $(PYTEST_ARGS)

$(APT_STAMP):
	@mkdir -p .run
	$(SUDO) apt-get update -qq
	@touch $@

# Podman (with runc) where no container engine exists; debootstrap to build base images
# without Docker Hub; e2fsprogs for instances' fixed-size storage; iptables for the rules that
# keep instances' networks apart (spawner/isolation.py).
system:
	@need=""; \
	if ! command -v podman >/dev/null && ! docker info >/dev/null 2>&1; then need="$$need podman runc uidmap"; fi; \
	command -v debootstrap >/dev/null || need="$$need debootstrap"; \
	PATH="$$PATH:/usr/sbin:/sbin" command -v resize2fs >/dev/null || need="$$need e2fsprogs"; \
	PATH="$$PATH:/usr/sbin:/sbin" command -v iptables-restore >/dev/null || need="$$need iptables"; \
	if [ -n "$$need" ]; then \
		$(MAKE) --no-print-directory $(APT_STAMP); \
		echo "installing:$$need"; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; \
	fi

# What only the tests and benchmarks use: a browser, a PostgreSQL server, an LDAP server, SSH
# clients and a server (the benchmark's jump host), rsync and pgrep.
test-system:
	@need=""; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	command -v docker-registry >/dev/null || need="$$need docker-registry"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	[ -x /usr/sbin/slapd ] || need="$$need slapd"; \
	command -v ssh >/dev/null || need="$$need openssh-client"; \
	[ -x /usr/sbin/sshd ] || need="$$need openssh-server"; \
	command -v rsync >/dev/null || need="$$need rsync"; \
	command -v pgrep >/dev/null || need="$$need procps"; \
	if [ -n "$$need" ]; then \
		$(MAKE) --no-print-directory $(APT_STAMP); \
		echo "installing:$$need"; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; \
	fi

venv: $(BIN)/workbench

# the client first: the platform depends on it, and pip finds it installed (it is not on PyPI)
$(BIN)/workbench: setup.cfg pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./client
	$(BIN)/pip install --quiet -e '.[test]'
	@# rfc3987-syntax (jsonschema's format checkers, through jupyter_events) builds a grammar
	@# on import: 1 to 2 s of CPU at each start of the hub and of every service; it checks
	@# only "iri" formats, which nothing here uses (the images drop it too)
	$(BIN)/pip uninstall --quiet -y rfc3987-syntax lark
	@touch $@

node: node_modules/.bin/configurable-http-proxy

node_modules/.bin/configurable-http-proxy: package.json
	npm install --no-audit --no-fund
	@touch $@

# the default image: what `make up` needs to start instances
images: venv system
	$(BIN)/workbench images build python

# every CPU image of the catalog (PyTorch, TensorFlow, MindSpore: ~9 GB, ~8 min the first time)
# the base image first, then the images built on it and the hub image (for Kubernetes) side
# by side (every line of their progress names its image), then the summary of the catalog's
images-all: venv system
	$(BIN)/workbench images build python
	@names=$$($(BIN)/python -c "from images.catalog import load_catalog; \
	print(*(e.name for e in load_catalog() if e.base), 'hub')"); \
	pids=""; for name in $$names; do $(BIN)/workbench images build $$name & pids="$$pids $$!"; done; \
	failed=0; for pid in $$pids; do wait $$pid || failed=1; done; \
	if [ $$failed -ne 0 ]; then echo "an image build failed: its lines above say which and why"; exit 1; fi
	$(BIN)/workbench images build

lint: lint-js
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the JupyterLab extensions' TypeScript: prettier and eslint
LABEXT := labextensions/workbench
lint-js: $(LABEXT)/node_modules/.package-lock.json
	cd $(LABEXT) && npm run lint

$(LABEXT)/node_modules/.package-lock.json: $(LABEXT)/package.json $(LABEXT)/package-lock.json
	cd $(LABEXT) && npm ci --no-audit --no-fund

# the panel's wheel (prebuilt lab extension + server extension) into $(LABEXT)/dist/;
# `workbench images build` builds it too, into .run/cache/wheels/local/, for the base image
labextension: venv $(LABEXT)/node_modules/.package-lock.json
	$(BIN)/pip wheel --no-deps --wheel-dir $(LABEXT)/dist $(LABEXT)

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: system test-system venv node images
	$(BIN)/python benchmarks/bench_spawn.py
	$(BIN)/python benchmarks/bench_spawn_concurrent.py
	$(BIN)/python benchmarks/bench_hub_scale.py
	$(BIN)/python benchmarks/bench_signin_images.py
	$(BIN)/python benchmarks/bench_save.py
	$(BIN)/python benchmarks/bench_ssh.py
	$(BIN)/workbench images build pytorch
	$(BIN)/python benchmarks/bench_jobs.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_datasets.py
	$(BIN)/python benchmarks/bench_labelling.py
	$(BIN)/python benchmarks/bench_gallery.py

clean:
	rm -rf $(VENV) node_modules .run/cache $(LABEXT)/node_modules $(LABEXT)/dist
