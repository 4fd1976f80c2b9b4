#!/usr/bin/env bash
# Newcomer command 2: set up .venv with the test extras and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k spaces -x).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit $?
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
fi
exit "$status"
