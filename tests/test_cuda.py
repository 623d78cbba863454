"""The CUDA execution provider on a host that has one (an NVIDIA GPU and onnxruntime-gpu).

Skipped where onnxruntime has no CUDA provider; there, test_startup shows that SENTIMENT_PROVIDER=cuda
refuses to start with a one-line reason instead of falling back to the CPU.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from model_runtime import CUDA_PROVIDER, Predictor, read_card
from service.app import create_app
from service.config import Settings
from tests.support import SHIPPED_MODEL, wait_until_ready
from training.sources import split_from_record

pytestmark = pytest.mark.skipif(
    CUDA_PROVIDER not in ort.get_available_providers(),
    reason="this onnxruntime has no CUDA provider (install the 'gpu' extra on a GPU host)",
)


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    test = split_from_record(read_card(SHIPPED_MODEL).data).test
    return [ex.text for ex in test if ex.source == "imdb"][:512]


@pytest.mark.parametrize("batch_size", [1, 64, 512])
def test_cuda_scores_match_cpu(reviews: list[str], batch_size: int) -> None:
    cpu = Predictor.load(SHIPPED_MODEL, provider="cpu")
    gpu = Predictor.load(SHIPPED_MODEL, provider="cuda")
    assert gpu.provider == CUDA_PROVIDER
    texts = reviews[: max(batch_size, 64)]
    expected = cpu.predict(texts)
    got = [p for i in range(0, len(texts), batch_size) for p in gpu.predict(texts[i : i + batch_size])]
    cpu_positive = np.array([p.probabilities["positive"] for p in expected])
    diff = np.abs(np.array([p.probabilities["positive"] for p in got]) - cpu_positive)
    print(f"batch {batch_size}: largest |cuda - cpu| = {diff.max():.2e}")
    # cuDNN's LSTM may use TF32 matrix units on recent GPUs: agreement to 2e-3, not float32's 1e-6.
    assert diff.max() < 2e-3
    clear = np.abs(cpu_positive - 0.5) > 2e-3
    assert [p.label for p, c in zip(got, clear, strict=True) if c] == [
        p.label for p, c in zip(expected, clear, strict=True) if c
    ]


def test_service_runs_on_cuda(reviews: list[str]) -> None:
    with TestClient(create_app(Settings(model_dir=SHIPPED_MODEL, provider="cuda"))) as client:
        wait_until_ready(client, timeout=60)
        assert client.get("/model").json()["provider"] == CUDA_PROVIDER
        response = client.post("/predict", json={"texts": reviews[:64]})
        assert response.status_code == 200
        assert len(response.json()["predictions"]) == 64
