#!/usr/bin/env bash
# The benchmark: in-process ceiling, the service over HTTP and the PyTorch-eager baseline in one run
# (python -m bench.run; docs/performance.md). Extra arguments go to bench.run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk
[ -x .venv/bin/python ] || ./scripts/setup.sh
exec .venv/bin/python -m bench.run "$@"
