#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what it needs (Debian packages, .venv), runs the
# quality gates (scripts/lint.sh) beside the tests, in one test process per core: the fast unit tests
# (tests/unit: real objects, no HTTP, no server process) first, then everything else (real servers,
# Docker, Chromium, tritonclient, Ray, training). What it makes is reused by content hash on the next
# run: .venv (scripts/setup.sh), the corpora and tiny models (tests/conftest.py), the base and service
# images (tests/docker_image.py). Extra arguments go to pytest (e.g. scripts/test.sh -k api);
# TEST_PROCESSES sets the number of test processes. COVERAGE=1 also measures the coverage of service/ and
# model_runtime/ (server subprocesses included) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
began=$(date +%s)

# Debian packages for the container tests (a Docker engine started by the tests themselves, and
# debootstrap for a base image when no registry is reachable) and the browser tests (headless Chromium,
# driven by Playwright's Python package; Playwright's own browser download is never used), and PostgreSQL
# for the jobs store's PostgreSQL tests (a server of their own on a free port). Skipped when
# not root or not Debian; those tests then skip with the reason. They are installed beside .venv; for the
# whole suite (no extra arguments), the Docker engine and the service's image are then made beside
# everything else, at the lowest CPU priority, by a process of their own (tests/docker_image.py) that the
# docker tests attach to; with arguments, pytest starts it only if it collects a docker test.
DEB_PACKAGES="docker.io containerd runc iptables debootstrap docker-compose chromium chromium-driver wrk postgresql"
debian_packages() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
    local missing=""
    for pkg in $DEB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}
export SENTIMENT_TEST_DOCKER
SENTIMENT_TEST_DOCKER=$(mktemp -d -t sentiment-docker-XXXXXX)
trap 'python3 -m tests.docker_image stop "$SENTIMENT_TEST_DOCKER"' EXIT
debian_log=$(mktemp)
(
    debian_packages
    if [ $# = 0 ]; then
        python3 -m tests.docker_image prepare "$SENTIMENT_TEST_DOCKER" >"$SENTIMENT_TEST_DOCKER/prepare.log" 2>&1 &
    fi
) >"$debian_log" 2>&1 &
debian=$!

./scripts/setup.sh
status=0
wait "$debian" || status=$?
cat "$debian_log"
rm -f "$debian_log"
[ "$status" = 0 ]
echo "set-up: $(( $(date +%s) - began )) s"

# The quality gates run beside the tests; the command fails if either fails.
gates_log=$(mktemp)
./scripts/lint.sh >"$gates_log" 2>&1 &
gates=$!

coverage=()
if [ "${COVERAGE:-0}" = 1 ]; then
    rm -f .coverage .coverage.*
    coverage=(--cov --cov-report=)
fi
# One test process per core (pytest-xdist). Each module's tests run in one process, so that its servers and
# browser are made once (tests/conftest.py schedules them), in the order conftest.py gives them: the fast
# unit tier first (tests/unit: real objects, no HTTP, no server process), the docker tests last.
tests=0
.venv/bin/python -m pytest tests --numprocesses "${TEST_PROCESSES:-$(nproc)}" --dist loadscope \
    --no-loadscope-reorder "${coverage[@]}" "$@" || tests=$?
[ "$tests" != 5 ] || tests=0  # a -k/-m filter that leaves nothing to run
gate=0
wait "$gates" || gate=$?
cat "$gates_log"
rm -f "$gates_log"
echo "total: $(( $(date +%s) - began )) s"
if [ "$gate" != 0 ]; then
    echo "the quality gates failed (scripts/lint.sh)" >&2
    exit "$gate"
fi
[ "$tests" = 0 ]
if [ "${COVERAGE:-0}" = 1 ]; then
    .venv/bin/python -m coverage combine --append --quiet || true
    .venv/bin/python -m coverage report
fi
