#!/bin/sh
# Shared by Dockerfile (CPU) and Dockerfile.gpu: a virtual environment in /opt/venv holding the service
# with the given extras (no torch, no training code).
# Usage: install-app.sh EXTRAS   e.g. "serve,cpu" or "serve,gpu"
set -eu
extras=$1
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --timeout 60 --retries 5 "/src[${extras}]"
# Tests, caches and headers are dead weight in a runtime image.
find /opt/venv -depth \( -name __pycache__ -o -name tests -o -name test \) -type d -exec rm -rf {} +
rm -rf /opt/venv/include /src /root/.cache
if /opt/venv/bin/python -c "import torch" 2>/dev/null; then
    echo "torch must not be in the serving image" >&2
    exit 1
fi
