# Two entry points that work on a fresh machine and do their own set-up:
#   make demo   fakecri serves scenarios/fast_exit.yaml; crisensor watches it and prints events
#   make test   the whole test suite (installs Python deps in .venv, and containerd when root)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

demo: setup
	$(BIN)/python -m sensor.demo

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
