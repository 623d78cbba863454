#!/usr/bin/env bash
# The quality gates, in the order the test command runs them: lint, formatting, strict types, and the import
# rules between layers ([tool.importlinter] in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="model_runtime service training sentiment_client sentiment_bulk bench tests"
.venv/bin/ruff check $PACKAGES
.venv/bin/ruff format --check $PACKAGES
.venv/bin/mypy
.venv/bin/lint-imports
