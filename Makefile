# xdpfeed: `make demo` and `make test` set everything up themselves (apt packages, .venv, cffi
# build) and are idempotent; the second run skips what is already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xdpfeed-installed
# gcc + headers build the cffi modules; tshark is the independent oracle some tests compare against;
# libxdp/libbpf + clang/llvm build the AF_XDP module and the XDP program; ethtool/iproute2 for root tests;
# dpdk-dev (libdpdk + its poll-mode drivers, net_pcap/net_af_packet/net_af_xdp among them) builds the dpdk: source;
# python3-venv (Debian splits ensurepip out of python3) and python3-dev (Python.h for the cffi builds) for a machine
# that has only python3; procps brings sysctl (the Ansible roles' sysctl tasks), systemd `systemd-analyze verify`.
# promtool is not installed from the `prometheus` package (that would start a Prometheus server on a systemd host):
# scripts/ensure-promtool.sh takes the one binary out of the package into the venv.
APT_PACKAGES := gcc libc6-dev python3-venv python3-dev tshark libxdp-dev libbpf-dev clang llvm pkg-config ethtool \
	iproute2 procps dpdk-dev systemd

.PHONY: setup demo test test-slow test-sanitize bench lint clean

setup: $(STAMP)

$(STAMP): Makefile pyproject.toml setup.py $(wildcard scripts/*.sh) $(wildcard native/*.c native/*.h native/build_*.py)
	@scripts/ensure-apt.sh $(APT_PACKAGES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "xdpfeed needs Python >= 3.11")'
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@# bytecode for our modules, as pip writes it for installed packages: where PYTHONDONTWRITEBYTECODE is set (some
	@# CI machines) Python would otherwise compile every module from source at each start (~110 ms a command)
	@$(PY) -m compileall -q -j 0 capture multicast native >/dev/null
	@scripts/ensure-promtool.sh $(VENV)/bin/promtool
	@echo "compiling the live path once (numba cache): a small demo run on loopback" >&2
	@$(VENV)/bin/xdpfeed demo --messages 6000 --rate 0 --burst-loss 1000 --json >/dev/null
	@$(PY) -c 'from xdpfeed.multicast.feed.warmup import warm_up; warm_up()'  # and what the demo does not run
	@echo "exporting the book's compiled loops (xdpfeed book runs them without loading numba)" >&2
	@$(PY) -m xdpfeed.multicast.book.export_build >/dev/null
	@touch $@

demo: setup
	@$(VENV)/bin/xdpfeed demo
	@echo
	@$(VENV)/bin/xdpfeed orders-demo

# Test files run on every core (pytest-xdist, one file per worker at a time): 2 cores halve the time.
test: setup
	@$(PY) -m pytest -n auto --dist loadfile

test-slow: setup
	@$(PY) -m pytest -m slow

# native/ rebuilt with ASan + UBSan, and the tests that drive it (UDP, AF_XDP, DPDK) run against that build
test-sanitize: setup
	@$(PY) tests/sanitize.py

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b" >&2; $(PY) $$b || exit 1; done

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info bench/.data
