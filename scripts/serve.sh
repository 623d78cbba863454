#!/usr/bin/env bash
# Starts the service on the shipped model (models/sentiment-bilstm) at http://127.0.0.1:8000.
# Uses its own virtual environment with the serving dependencies only (no torch).
# Any SENTIMENT_* variable set in the environment is honoured (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv-serve/bin/python ]; then
    "$PYTHON" -m venv .venv-serve
fi
.venv-serve/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 -e ".[serve,cpu]"

exec .venv-serve/bin/python -m service
