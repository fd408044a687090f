# Shoal: `make demo` and `make test` do all set-up on a fresh Debian 12 machine, as root.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: the lab (iproute2, nftables, docker-registry, skopeo, busybox-static),
# monitoring (prometheus), and what building the virtualenv needs.
APT_PACKAGES := iproute2 nftables busybox-static docker-registry skopeo prometheus \
	libseccomp2 python3 python3-venv python3-dev gcc make ca-certificates
APT_STAMP := $(VENV)/.apt-$(shell echo $(APT_PACKAGES) | sha256sum | cut -c1-12)

.PHONY: setup apt-lists test lint typecheck unit integration soak proto demo demo-down bench bench-peers clean

setup: $(APT_STAMP) $(VENV)/.installed

# Installs only what is missing, so a second run does no network work and prints nothing.
define apt_install
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

$(APT_STAMP):
	$(call apt_install,$(APT_PACKAGES))
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.installed: pyproject.toml $(APT_STAMP)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@echo "pip: installing shoal and its dev tools into $(VENV)"
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# The demo app's images are built from Debian packages (deploy/demo_images.py): apt must know
# them (a machine whose package lists were never fetched, or were cleaned, fetches them).
apt-lists:
	@apt-cache show python3-flask redis-server >/dev/null 2>&1 || { \
		echo "apt: fetching the package lists"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup apt-lists
	$(BIN)/pytest -q tests/integration

test: lint typecheck unit integration

# Not in `make test`: SHOAL_SOAK_MINUTES (default 30) of service churn and faults on a lab,
# ending converged, linearizable, with nothing leaked (tests/integration/soak).
soak: setup apt-lists
	SHOAL_SOAK_MINUTES=$${SHOAL_SOAK_MINUTES:-30} $(BIN)/pytest -q -s tests/integration/soak

proto: setup
	$(BIN)/python proto/gen.py

# The peers the benchmarks measure beside Shoal, from Debian: etcd (benchmarks/raft.py runs
# its own 3 members in a lab; the package's own service is stopped and disabled).
PEER_PACKAGES := etcd-server etcd-client
bench-peers: setup
	$(call apt_install,$(PEER_PACKAGES))
	@if systemctl list-unit-files etcd.service >/dev/null 2>&1; then systemctl disable --now etcd.service >/dev/null 2>&1 || true; fi

# Every script in benchmarks/, one after another, with its default arguments; each prints
# its figures and ends with a key=value line. As root: they make labs, namespaces, containers.
bench: setup
	@[ "$$(id -u)" = 0 ] || { echo "make bench: run as root (labs, namespaces, containers)" >&2; exit 1; }
	@for script in benchmarks/*.py; do \
		echo "== $$script"; \
		$(BIN)/python "$$script"; \
	done

demo: setup apt-lists
	$(BIN)/python -m deploy.demo

demo-down: setup
	$(BIN)/swarm-machine lab down demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
