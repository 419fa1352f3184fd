# Two entry points that work on a fresh machine and do their own set-up:
#   make demo   fakecri serves scenarios/fast_exit.yaml; crisensor watches it and prints events
#   make test   the whole test suite (installs Python deps in .venv, and containerd when root)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint bench clean mutate

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

# Mutation testing (docs/guarantees.md, "Mutation scores"): mutmut is installed on demand, into the
# venv only. MUTATE: files to mutate; MUTATE_TESTS: the fast tests that must kill the mutants.
MUTATE ?= sensor/config.py sensor/duration.py sensor/yamlfile.py
MUTATE_TESTS ?= tests/sensor/test_sensor_config.py tests/sensor/test_sensor_config_messages.py \
	tests/sensor/test_sensor_duration.py tests/sensor/test_sensor_yamlfile.py
mutate: setup
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q mutmut
	nice -n 10 $(BIN)/python scripts/mutate.py --mutate $(MUTATE) --tests $(MUTATE_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
