# Two entry points, each installs what it needs (idempotently) and then runs:
#   sudo make demo   a complete exercise end to end, unattended
#   sudo make test   the whole test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Debian's system python3 (3.11 on Debian 12) sees Debian's mininet module, which matches mnexec.
SYSTEM_PYTHON := /usr/bin/python3
APT_PACKAGES := mininet bridge-utils net-tools nftables iproute2 procps mount tcpdump \
	bind9-dnsutils iputils-ping telnet netcat-openbsd swaks python3 python3-venv python3-pip \
	util-linux knot-dnsutils bind9-utils unbound dnsperf openssl libnet-ssleay-perl \
	libio-socket-ssl-perl pflogsumm bubblewrap tmux chromium

.PHONY: install apt venv bytecode test test-fast demo bench clean-labs lint

install: apt venv bytecode

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  case " $$missing " in *" unbound "*) \
	    echo "unbound runs only inside lab nodes: not as a service on this machine"; \
	    systemctl disable --now unbound.service >/dev/null 2>&1 || true;; esac; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# every `lab` command (and every node command) imports the package afresh: compiled once
# here, not on each run (an environment with PYTHONDONTWRITEBYTECODE never caches it;
# an up-to-date file is skipped, so this costs nothing when nothing changed)
bytecode: venv
	@$(PY) -m compileall -q lab

# test files run in parallel, each on one worker (its module labs are shared there; a long
# file may share out: XDIST_GROUPS in tests/conftest.py); the labs mostly wait (for
# shells, timers, mail), so more workers than cores pay
TEST_JOBS ?= 4

test: install
	$(PY) -m pytest -ra -n $(TEST_JOBS) --dist loadgroup

test-fast: install
	$(PY) -m pytest -ra -n $(TEST_JOBS) --dist loadgroup -m "not slow"

demo: install
	./scripts/demo.sh

bench: install
	$(PY) bench/engine_bench.py

clean-labs: venv
	$(VENV)/bin/lab clean

lint: venv
	$(PY) -m ruff check lab tests bench
