#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: creates .venv, installs everything it needs, runs the quality
# gates (ruff, ruff format, mypy --strict, import-linter), then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k api).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages for the container tests (a Docker engine started by the tests themselves, and
# debootstrap for a base image when no registry is reachable) and the browser tests (headless Chromium,
# driven by Playwright's Python package; Playwright's own browser download is never used). Skipped when
# not root or not Debian; those tests then skip with the reason.
DEB_PACKAGES="docker.io containerd runc iptables debootstrap docker-compose chromium chromium-driver wrk"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 -e ".[serve,cpu,train,dev,client,ray]"

# Quality gates, before any test: lint, formatting, strict types, and the import rules between layers.
PACKAGES="model_runtime service training sentiment_client bench tests"
.venv/bin/ruff check $PACKAGES
.venv/bin/ruff format --check $PACKAGES
.venv/bin/mypy
.venv/bin/lint-imports

exec .venv/bin/python -m pytest "$@"
