# Two entry points that work on a fresh machine and do their own set-up:
#   make demo   fakecri serves scenarios/fast_exit.yaml; crisensor watches it and prints events
#   make test   the whole test suite (installs Python deps in .venv, and containerd when root)
#   make deep   the property tests with random seeds and many more examples (see below)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test deep lint bench clean mutate

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

# make deep: the property tests under hypothesis' `deep` profile (tests/conftest.py: random seeds,
#   5,000 examples -- 25x ci -- for tests that take the profile's count; the checker properties 10x
#   via CHECK_EXAMPLES). Run it before resolving any issue that touches a pure core; every
#   counterexample becomes an explicit @example. Scoped to the pure cores' properties (diff engine,
#   fast path, stream engine, durations, checker, reorder, enrichment, runtime model, process
#   interpreter and CRI log splitter). Measured here:
#   7 min on 2 otherwise idle cores (one core busy); 25-40 min while other jobs shared them. Left out:
#   tests/guarantees/test_histories.py, which drives the real sensor over sockets (1,250 histories in
#   deep: hours) -- run it alone when the sensor's shells change:
#   HYPOTHESIS_PROFILE=deep pytest tests/guarantees/test_histories.py
DEEP_TESTS ?= tests/perf/test_fastpath_equivalence.py tests/sensor/test_sensor_diff_stateful.py \
	tests/sensor/test_stream_engine.py tests/sensor/test_sensor_duration.py tests/check/test_check_properties.py \
	tests/analytics/test_analytics_reorder.py tests/analytics/test_analytics_enrich.py tests/fakecri/test_model.py \
	tests/process/test_cnproc.py tests/process/test_cgroup.py tests/process/test_exectrack.py tests/sensor/test_lookup.py \
	tests/check/test_check_attribution.py tests/sensor/test_wire.py tests/fakecri/test_shell.py \
	tests/sensor/test_state.py tests/sensor/test_state_killpoints.py tests/sensor/test_fanout.py
deep: setup
	CHECK_EXAMPLES=3000 HYPOTHESIS_PROFILE=deep $(BIN)/python -m pytest -q -p no:cacheprovider -k 'not socket' \
		$(DEEP_TESTS) $(PYTEST_ARGS)

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
