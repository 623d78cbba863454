"""The HTTP contract, through the real app with its lifespan and a real onnxruntime session."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from model_runtime import Predictor, file_sha256, pad_ids
from service.app import create_app
from service.config import Settings
from tests.support import ROOT, gauge, wait_until_ready
from training.data import Split
from training.export import as_served
from training.train import TrainResult

POSITIVE = "A wonderful, moving film. The acting is superb and I loved every minute of it."
NEGATIVE = "Awful. Boring, badly acted and far too long; a complete waste of time."

ClientFactory = Callable[..., Any]


@pytest.fixture
def make_client(tiny_model_dir: Path) -> Iterator[ClientFactory]:
    @contextmanager
    def factory(wait_ready: bool = True, **overrides: Any) -> Iterator[TestClient]:
        settings = Settings(model_dir=tiny_model_dir, **overrides)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            if wait_ready:
                wait_until_ready(client)
            yield client

    yield factory


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


def assert_error(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    return dict(error)


# ---------------------------------------------------------------------------------------------- contract


def test_predict_batch_contract(client: TestClient) -> None:
    response = client.post("/predict", json={"texts": [POSITIVE, NEGATIVE, "ok"]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "tiny-bilstm", "version": "0.0.1"}
    assert len(body["predictions"]) == 3
    for p in body["predictions"]:
        assert set(p) == {"label", "score", "probabilities", "tokens", "truncated", "language"}
        assert set(p["probabilities"]) == {"negative", "neutral", "positive"}  # the tiny model's labels
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["score"] == p["probabilities"][p["label"]] == max(p["probabilities"].values())
        assert p["truncated"] is False
    assert body["predictions"][2]["tokens"] == 1


def test_single_text_equals_its_batch_entry(client: TestClient) -> None:
    one = client.post("/predict", json={"text": POSITIVE}).json()["predictions"]
    many = client.post("/predict", json={"texts": [NEGATIVE, POSITIVE]}).json()["predictions"]
    assert len(one) == 1
    assert one[0]["probabilities"] == pytest.approx(many[1]["probabilities"], abs=1e-5)


def test_a_lone_request_runs_its_length_groups_in_parallel_with_the_same_answers(
    client: TestClient, tiny_model_dir: Path, imdb_split: Split
) -> None:
    """One request of many long texts is cut into length groups that run on every worker's thread at
    once; each group is the same model run as when they ran one after the other, so the answers are equal
    to the bit."""
    texts = [ex.text for ex in imdb_split.test[:96]]
    served = client.post("/predict", json={"texts": texts[:64]}).json()["predictions"]
    served += client.post("/predict", json={"texts": texts[64:]}).json()["predictions"]
    predictor = Predictor.load(tiny_model_dir, intra_op_threads=1)
    settings = Settings()
    threads: set[str] = set()
    both_running = threading.Barrier(2, timeout=30)  # the first two groups meet: two threads, at once

    calls = itertools.count()

    def run_noting_thread(ids: list[list[int]]) -> Any:
        threads.add(threading.current_thread().name)
        if next(calls) < 2:
            both_running.wait()
        return predictor.probabilities(ids)

    with ThreadPoolExecutor(2) as pool:
        ids = [enc.ids for enc in predictor.encode(texts[:64])]
        predictor.grouped_probabilities(ids, settings.max_batch_tokens, run=run_noting_thread, map_groups=pool.map)
    one_by_one = predictor.predict(texts[:64], settings.max_batch_tokens, settings.max_batch_size)
    one_by_one += predictor.predict(texts[64:], settings.max_batch_tokens, settings.max_batch_size)
    assert len(threads) == 2
    assert [p["probabilities"] for p in served] == [p.probabilities for p in one_by_one]


def test_results_are_batch_invariant_and_equal_the_export_reference(
    client: TestClient, tiny_run: TrainResult, imdb_split: Split
) -> None:
    target = "Not bad at all. I expected little and was pleasantly surprised."
    long_reviews = sorted((ex.text for ex in imdb_split.test), key=len)[-63:]
    alone = client.post("/predict", json={"text": target}).json()["predictions"][0]
    for position in (0, 31, 63):
        texts = [*long_reviews[:position], target, *long_reviews[position:]]
        batch = client.post("/predict", json={"texts": texts}).json()["predictions"]
        assert batch[position]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    # The PyTorch model the export was verified against gives the same probabilities.
    ids = tiny_run.tokenizer.encode(target).ids
    batch_ids, lengths = pad_ids([ids])
    with torch.no_grad():
        reference = torch.softmax(
            as_served(tiny_run.model)(torch.from_numpy(batch_ids), torch.from_numpy(lengths), packed=True), dim=1
        )[0].tolist()
    assert list(alone["probabilities"].values()) == pytest.approx(reference, abs=1e-5)


def test_long_texts_are_truncated_and_flagged(client: TestClient) -> None:
    card = client.get("/model").json()
    words = " ".join(["good"] * (card["max_tokens"] + 50))
    p = client.post("/predict", json={"text": words}).json()["predictions"][0]
    assert p["truncated"] is True
    assert p["tokens"] == card["max_tokens"]


def test_one_version_for_the_package_the_openapi_document_and_the_protocol(client: TestClient) -> None:
    version = importlib.metadata.version("sentiment-service")
    assert client.get("/openapi.json").json()["info"]["version"] == version
    assert client.get("/v2").json()["version"] == version
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()  # every release says what it changed


def test_health_model_and_metrics(client: TestClient, tiny_model_dir: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/model").json()
    card = json.loads((tiny_model_dir / "model_card.json").read_text())
    assert info["provider"] == "CPUExecutionProvider"
    assert info["sha256"] == file_sha256(tiny_model_dir / "model.onnx")
    assert info["labels"] == ["negative", "neutral", "positive"] == card["labels"]
    assert info["languages"] == ["en"]
    assert info["max_tokens"] == card["max_tokens"]
    assert info["truncation"]["side"] == "keep_end"
    assert info["metrics"]["test"]["accuracy"] == card["metrics"]["test"]["accuracy"]
    client.post("/predict", json={"texts": [POSITIVE, NEGATIVE]})
    client.post("/predict", json={"texts": []})
    text = client.get("/metrics").text
    assert 'sentiment_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'sentiment_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert "sentiment_texts_scored_total 2.0" in text
    for name in (
        "sentiment_request_duration_seconds_bucket",
        "sentiment_queue_wait_seconds_count",
        "sentiment_inference_seconds_count",
        "sentiment_batch_size_bucket",
        "sentiment_queue_depth",
    ):
        assert name in text


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_concurrent_requests_share_model_batches(make_client: ClientFactory) -> None:
    with make_client(max_wait_ms=50, max_batch_size=64) as client, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: client.post("/predict", json={"text": f"{POSITIVE} {i}"}), range(48)))
        assert all(r.status_code == 200 for r in responses)
        metrics = client.get("/metrics").text
    batches = gauge(metrics, r"^sentiment_batch_size_count (\S+)$")
    texts = gauge(metrics, r"^sentiment_batch_size_sum (\S+)$")
    assert texts == 48
    assert batches < 48 / 2, f"{batches:.0f} batches for 48 concurrent requests"


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"text": ""}, ["text", "non-whitespace"]),
        ({"text": " \n\t "}, ["text", "non-whitespace"]),
        ({"texts": ["fine", "  "]}, ["texts[1]", "non-whitespace"]),
        ({"texts": ["x"] * 65}, ["texts", "1 to 64 texts, not 65"]),
        ({"texts": []}, ["texts", "1 to 64 texts, not 0"]),
        ({"text": "a" * 100_001}, ["text", "100,001 characters; the limit is 100,000"]),
        ({"text": 5}, ["text", "must be a string, not a number"]),
        ({"texts": "not a list"}, ["texts", "must be an array of strings"]),
        ({"texts": ["ok", 7]}, ["texts[1]", "must be a string"]),
        ({"texts": None}, ["texts", "not null"]),
        ({"text": "a", "texts": ["b"]}, ["exactly one of 'text'"]),
        ({}, ["exactly one of 'text'"]),
        ({"text": "a", "extra": 1}, ["extra", "unknown field"]),
        ([1, 2], ["JSON object, not an array"]),
    ],
)
def test_invalid_input_is_a_422_naming_field_and_limit(client: TestClient, body: Any, fragments: list[str]) -> None:
    payload = json.dumps(body)
    error = assert_error(
        client.post("/predict", content=payload, headers={"content-type": "application/json"}), 422, *fragments
    )
    assert error["code"] == "validation_error"
    assert error["details"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fragment"),
    [
        (b'{"text": "unterminated', "application/json", 422, "not valid JSON"),
        (b"\xff\xfe not utf-8", "application/json", 422, "not UTF-8: byte 0xff at position 0"),
        (b'{"text": "\\ud800 lone surrogate"}', "application/json", 422, "surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 422, "depth limit"),
        (b'{"text": "fine"}', "text/plain", 415, "must be application/json"),
        (b"", "application/json", 422, "empty"),
    ],
)
def test_unreadable_bodies_are_4xx(
    client: TestClient, content: bytes, content_type: str, status: int, fragment: str
) -> None:
    assert_error(client.post("/predict", content=content, headers={"content-type": content_type}), status, fragment)
    assert client.get("/healthz").status_code == 200


def test_nul_bytes_and_emoji_are_scored(client: TestClient) -> None:
    response = client.post("/predict", json={"texts": ["nul\x00inside", "😀" * 100_000]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert predictions[1]["truncated"] is True


def test_body_over_the_limit_is_413_before_it_is_read(make_client: ClientFactory) -> None:
    with make_client(max_body_bytes=4096) as client:
        error = assert_error(client.post("/predict", json={"text": "a" * 5000}), 413, "4,096 bytes")
        assert error["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
            yield b'{"text": "'
            for _ in range(100):
                yield b"a" * 1000
            yield b'"}'

        assert_error(client.post("/predict", content=chunks(), headers={"content-type": "application/json"}), 413)
        assert client.post("/predict", json={"text": "small"}).status_code == 200


def test_fifty_megabytes_of_emoji_is_refused(client: TestClient) -> None:
    huge = json.dumps({"text": "😀" * (50 * 1024 * 1024 // 4)}, ensure_ascii=False).encode()
    assert_error(client.post("/predict", content=huge, headers={"content-type": "application/json"}), 413)


def test_queue_full_is_429_with_retry_after(make_client: ClientFactory) -> None:
    # The first request's 4 texts fill the queue and wait there (the batch is held open for 1 s).
    with make_client(max_queue=4, max_client_batch=4, max_wait_ms=1000) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/predict", json={"texts": ["a", "b", "c", "d"]})
        time.sleep(0.3)
        response = client.post("/predict", json={"text": "one more"})
        error = assert_error(response, 429, "queue is full (4 texts)")
        assert response.headers["retry-after"] == "1"
        assert error["code"] == "overloaded"
        assert first.result().status_code == 200
        assert client.post("/predict", json={"text": "one more"}).status_code == 200


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "no such route")
    assert_error(client.get("/predict"), 405, "not allowed")


# ---------------------------------------------------------------------------------------------- auth


def test_api_key_guards_predict_and_model_only(make_client: ClientFactory) -> None:
    with make_client(api_key="s3cret-key") as client:
        calls: list[tuple[str, Callable[[dict[str, str]], Any]]] = [
            ("/predict", lambda h: client.post("/predict", json={"text": POSITIVE}, headers=h)),
            ("/model", lambda h: client.get("/model", headers=h)),
        ]
        for path, call in calls:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "s3cret-key"},
                {"Authorization": "Basic s3cret-key"},
            ):
                response = call(headers)
                assert_error(response, 401, "API key")
                assert response.headers["www-authenticate"] == "Bearer"
            assert call({"Authorization": "Bearer s3cret-key"}).status_code == 200, path
        for open_path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/metrics"):
            assert client.get(open_path).status_code == 200, open_path


def test_without_api_key_everything_is_open(client: TestClient) -> None:
    assert client.post("/predict", json={"text": POSITIVE}).status_code == 200
    assert client.get("/model").status_code == 200


# ---------------------------------------------------------------------------------------------- readiness


def test_readiness_waits_for_warm_up(make_client: ClientFactory) -> None:
    with make_client(wait_ready=False, warmup_runs=400) as client:  # about 2 s of warm-up
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "starting"}
        assert client.get("/healthz").status_code == 200
        assert_error(client.post("/predict", json={"text": POSITIVE}), 503, "warming up")
        wait_until_ready(client, timeout=120)
        assert client.post("/predict", json={"text": POSITIVE}).status_code == 200


# ---------------------------------------------------------------------------------------------- docs


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html.text)
    assert urls, "the page references no assets?"
    for url in urls:
        assert not re.match(r"(https?:)?//", url), f"{page} loads {url} from elsewhere"
        if url.endswith((".js", ".css", ".png", ".json")):
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
    assert "fonts.googleapis" not in html.text


def test_openapi_schema_carries_limits_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    request = spec["components"]["schemas"]["PredictRequest"]
    texts = request["properties"]["texts"]
    assert texts["maxItems"] == 64
    assert texts["items"]["maxLength"] == 100_000
    assert request["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert request["properties"]["text"]["examples"]
    assert spec["components"]["schemas"]["PredictionOut"]["properties"]["label"]["examples"] == ["positive"]
    assert {"401", "413", "415", "422", "429", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
