#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: creates .venv, installs everything it needs, runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k api).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 -e ".[serve,train,dev]"

exec .venv/bin/python -m pytest "$@"
