# metergw: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PKGS := protocols drivers gateway simulator

.PHONY: demo test lint fmt bench venv system-deps dist clean

# Debian's python3 needs python3-venv for this; as root we install it.
$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests drive for real; installed only where
# they are missing and we are root (a developer without root gets a skip with
# the reason, CI as root gets the real servers).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v victoria-metrics >/dev/null || missing="$$missing victoria-metrics"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else \
	    echo "not root: missing$$missing; their integration tests will be skipped"; \
	  fi; \
	fi

demo: $(STAMP)
	$(PY) -m gateway.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PKGS) tests bench
	$(VENV)/bin/ruff format --check $(PKGS) tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix $(PKGS) tests bench
	$(VENV)/bin/ruff format $(PKGS) tests bench

test: $(STAMP) system-deps lint
	$(PY) -m pytest

bench: $(STAMP) system-deps
	@for b in bench/*.py; do \
	  case $$b in */__init__.py|*/_*.py) continue;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; \
	done

# A wheel and an sdist in dist/: what docs/operations.md installs on a box.
dist: $(STAMP)
	rm -rf dist build *.egg-info
	$(PY) -m build --outdir dist .
	@ls -l dist

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis var dist build *.egg-info

# Mutation testing (not run by CI): each module against its own tests only,
# summaries in var/mutation/. MODULE=protocols/dlt645/frame.py make mutate for one.
.PHONY: mutate
mutate: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,mutate]'
	$(PY) tests/mutation.py $(MODULE)
