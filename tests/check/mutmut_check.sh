#!/bin/sh
# Mutation testing of the guarantee checker (fakecri/check/*.py) and the runtime model
# (fakecri/model.py) with their fast unit/property tests; docs/guarantees.md, "Mutation scores".
#
#   .venv/bin/pip install mutmut      # once, into the venv only (not a project dependency)
#   tests/check/mutmut_check.sh       # a full run (resumes where a previous one stopped)
#   tests/check/mutmut_check.sh NAME  # re-run named mutants, e.g. after adding a test
#   (cd /tmp/crisensor-mutmut-check && ../path/to/.venv/bin/mutmut results)
#
# mutmut 3 reads its configuration from setup.cfg or pyproject.toml; to keep both out of the
# project, the run happens in a copy of the tree with its own setup.cfg.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${MUTMUT_WORK:-/tmp/crisensor-mutmut-check}
mkdir -p "$WORK"
rm -rf "$WORK/fakecri" "$WORK/sensor" "$WORK/protos" "$WORK/cri_api" "$WORK/scenarios" "$WORK/tests"
(cd "$ROOT" && tar --exclude=__pycache__ --exclude=.hypothesis -cf - fakecri sensor protos cri_api scenarios tests \
    pyproject.toml) | (cd "$WORK" && tar -xf -)
cat > "$WORK/setup.cfg" <<'EOF'
[mutmut]
source_paths=fakecri
only_mutate=
    fakecri/check/*
    fakecri/model.py
also_copy=
    sensor/
    protos/
    cri_api/
    scenarios/
pytest_add_cli_args_test_selection=
    tests/check/
    tests/fakecri/test_model.py
pytest_add_cli_args=
    -p
    no:cacheprovider
EOF
cd "$WORK"
# Derandomized hypothesis (CI=true) so a mutant's verdict does not depend on a lucky draw;
# 20 examples per checker property keep a run well under 40 minutes on two shared cores.
CI=true HYPOTHESIS_PROFILE=dev CHECK_EXAMPLES=20 exec nice -n 10 "$ROOT/.venv/bin/mutmut" run --max-children 2 "$@"
