# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.10+:
#   make run    set up (system packages, .venv) and launch the app
#   make test   set up and run lint + the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.advgui-installed

.PHONY: run test lint format bench package clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	bash tools/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/advgui

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider --durations=20

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

package: $(STAMP)
	bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
