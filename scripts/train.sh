#!/usr/bin/env bash
# Reproduces the shipped model: python -m training all (train, export + verify, evaluate, card) into
# models/sentiment-bilstm. Extra arguments go to the command (python -m training all --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || ./scripts/setup.sh
exec .venv/bin/python -m training all "$@"
