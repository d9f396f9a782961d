# pacestack: the two commands the README starts with are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PACESTACK_CACHE ?= /var/cache/pacestack

.PHONY: all system venv lint openstack-cache test test-fast demo bench clean
.PHONY: deb rpm packages

all: venv

system:
	scripts/setup-system.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,rehome]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .

# The OpenStack projects' pinned venv and synced schemas, built once per pin set
# into $(PACESTACK_CACHE) for every release of the test matrix (about 1.5 min per
# release cold, seconds warm), and Glance's venv with the memcache client the
# whole-profile lab runs (the first release's run builds it, ~2 min cold).
OPENSTACK_RELEASES = 2026.2 2025.1 2024.1
openstack-cache: system venv
	for release in $(OPENSTACK_RELEASES); do \
	    $(PY) scripts/build-openstack-cache.py --release $$release || exit 1; done

# The whole suite: real MariaDB, Galera, OpenStack schemas, Pacemaker in namespaces,
# on two workers: most of its time is spent waiting on those services (tests/conftest.py
# keeps each module on one worker and the namespace-making modules one after another).
TEST_WORKERS ?= 2
test: system venv lint openstack-cache
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup \
	    --durations=30 $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -q -m 'not slow' $(PYTEST_ARGS)

demo: system venv
	$(PY) scripts/demo.py

# Distribution packages into dist/, built from a clean export of the last commit
# (git archive HEAD, never the working tree), reproducible: SOURCE_DATE_EPOCH is
# that commit's time. PACKAGE_REF=<commit> builds another commit.
deb: system
	packaging/build.sh deb

rpm: system
	packaging/build.sh rpm

packages: deb rpm

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
