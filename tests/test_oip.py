"""The Open Inference Protocol (KServe V2 REST) with the real tritonclient against a real server process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support import launch, start_server, stop_server

pytestmark = pytest.mark.slow
AUTH = ("Authorization", "Bearer oip-key")


def key() -> dict[str, str]:
    """A fresh header dict each call: tritonclient writes its own headers into the dict it is given."""
    return dict([AUTH])


LONG_REVIEW = " ".join(["The pacing was uneven but the performances kept me watching until the end."] * 70)
TEXTS = ["Loved it! 😍🎬", "这部电影太棒了", "Dull.", LONG_REVIEW, "Not bad at all, actually rather good."]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[str]:
    base, process = launch(tiny_model_dir, SENTIMENT_API_KEY="oip-key", SENTIMENT_MAX_BODY_BYTES="65536")
    yield base
    stop_server(process)


@pytest.fixture
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=server.removeprefix("http://"))
    yield c
    c.close()


def text_input(texts: list[str], binary: bool, name: str = "text", datatype: str = "BYTES") -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], datatype)
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return tensor


def number_input() -> triton.InferInput:
    tensor = triton.InferInput("text", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32), binary_data=False)
    return tensor


def predict(server: str, texts: list[str]) -> list[dict[str, Any]]:
    answer = httpx.post(f"{server}/predict", json={"texts": texts}, headers=key(), timeout=30)
    assert answer.status_code == 200
    predictions: list[dict[str, Any]] = answer.json()["predictions"]
    return predictions


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live(headers=key())
    assert client.is_server_ready(headers=key())
    assert client.is_model_ready("tiny-bilstm", headers=key())
    assert client.is_model_ready("tiny-bilstm", "0.0.1", headers=key())
    assert not client.is_model_ready("other-model", headers=key())
    metadata = client.get_model_metadata("tiny-bilstm", headers=key())
    assert metadata["versions"] == ["0.0.1"]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]} == {
        "label": ("BYTES", [-1]),
        "score": ("FP32", [-1]),
        "probabilities": ("FP32", [-1, 3]),
        "language": ("BYTES", [-1]),
        "language_supported": ("BOOL", [-1]),
    }
    assert metadata["parameters"]["labels"] == ["negative", "neutral", "positive"]
    assert client.get_model_metadata("tiny-bilstm", "0.0.1", headers=key())["name"] == "tiny-bilstm"
    assert client.get_server_metadata(headers=key())["name"] == "sentiment-service"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_predict(client: triton.InferenceServerClient, server: str, binary: bool) -> None:
    names = ("label", "score", "probabilities", "language", "language_supported")
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
    result = client.infer(
        "tiny-bilstm", [text_input(TEXTS, binary)], outputs=outputs, request_id="req-7", headers=key()
    )
    expected = predict(server, TEXTS)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [p["label"] for p in expected]
    np.testing.assert_allclose(result.as_numpy("score"), [p["score"] for p in expected], atol=1e-6)
    probabilities = np.array([[p["probabilities"][x] for x in ("negative", "neutral", "positive")] for p in expected])
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    codes = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("language")]
    assert codes == [p["language"]["code"] or "" for p in expected]
    assert result.as_numpy("language_supported").tolist() == [p["language"]["supported"] for p in expected]
    assert result.get_response()["id"] == "req-7"


def test_defaults_and_selected_outputs(client: triton.InferenceServerClient, server: str) -> None:
    everything = client.infer("tiny-bilstm", [text_input(TEXTS[:2], True)], headers=key())  # binary outputs
    assert everything.as_numpy("probabilities").shape == (2, 3)
    only_score = client.infer(
        "tiny-bilstm",
        [text_input(TEXTS[:2], False)],
        model_version="0.0.1",
        outputs=[triton.InferRequestedOutput("score", binary_data=False)],
        headers=key(),
    )
    assert [o["name"] for o in only_score.get_response()["outputs"]] == ["score"]
    assert only_score.as_numpy("label") is None


@pytest.mark.parametrize(
    ("inputs", "status", "fragment"),
    [
        (lambda: [number_input()], "400", "datatype"),
        (lambda: [text_input(["fine"], False, name="review")], "400", "unknown input"),
        (lambda: [text_input(["fine", "   "], False)], "400", "text[1]: must contain at least one non-whitespace"),
    ],
)
def test_bad_tensors_are_400_naming_the_input(
    client: triton.InferenceServerClient, inputs: Callable[[], list[Any]], status: str, fragment: str
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bilstm", inputs(), headers=key())
    assert error.value.status() == status
    assert fragment in error.value.message()


def test_shape_must_match_the_data(server: str) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["one", "two"]}]}
    answer = httpx.post(f"{server}/v2/models/tiny-bilstm/infer", json=body, headers=key(), timeout=10)
    assert answer.status_code == 400
    assert answer.json() == {"error": "inputs[0].data: shape [3] but 2 values"}


def test_unknown_model_or_version_is_404_and_the_key_is_needed(client: triton.InferenceServerClient) -> None:
    for name, version in (("nope", ""), ("tiny-bilstm", "9.9.9")):
        with pytest.raises(InferenceServerException) as error:
            client.infer(name, [text_input(["fine"], False)], model_version=version, headers=key())
        assert error.value.status() == "404"
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bilstm", [text_input(["fine"], False)])
    assert error.value.status() == "401" and "API key" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bilstm", [text_input(["x" * 70_000], False)], headers=key())
    assert error.value.status() == "413"


def test_the_protocol_is_documented(server: str) -> None:
    paths = httpx.get(f"{server}/openapi.json", timeout=10).json()["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ):
        assert path in paths, path


def test_a_server_still_warming_up_answers_503(tiny_model_dir: Path, free_port: int) -> None:
    process = start_server(tiny_model_dir, free_port, None, SENTIMENT_WARMUP_RUNS="10000")
    try:
        base = f"http://127.0.0.1:{free_port}"
        deadline = time.monotonic() + 30
        while True:  # live, but not ready: the warm-up has 10,000 passes to go
            try:
                if httpx.get(f"{base}/v2/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client = triton.InferenceServerClient(url=f"127.0.0.1:{free_port}")
        try:
            assert client.is_server_live() and not client.is_server_ready()
            assert not client.is_model_ready("tiny-bilstm")
            with pytest.raises(InferenceServerException) as error:
                client.infer("tiny-bilstm", [text_input(["fine"], False)])
            assert error.value.status() == "503" and "warming up" in error.value.message()
        finally:
            client.close()
    finally:
        stop_server(process)
