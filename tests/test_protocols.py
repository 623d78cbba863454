"""One lifecycle, three protocols: the same texts get the same verdict from /predict, /explain and the Open
Inference Protocol, through the real app with its lifespan; only the error body differs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support import BINARY_MODEL, SHIPPED_MODEL, until, wait_until_ready

LIMIT = 40
CASES: list[tuple[str, Any]] = [
    ("plain", "Loved it."),
    ("information separator (not JSON Schema white space)", "\x1c"),
    ("byte-order mark alone", "\ufeff"),
    ("ideographic and no-break spaces", "\u3000\u00a0"),
    ("tabs and newlines", " \t\n\r "),
    ("control characters around a word", "\x00\x07word\x1f"),
    ("empty", ""),
    ("at the limit", "x" * LIMIT),
    ("over the limit", "x" * (LIMIT + 1)),
    ("emoji", "😀"),
    ("a number", 5),
    ("null", None),
    ("a list", ["nested"]),
]


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_model_dir, max_text_chars=LIMIT, max_client_batch=3, max_explain_texts=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_until_ready(c)
        yield c


def answers(client: TestClient, value: Any) -> dict[str, Any]:
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [value]}]}
    return {
        "predict text": client.post("/predict", json={"text": value}),
        "predict texts": client.post("/predict", json={"texts": [value]}),
        "explain": client.post("/explain", json={"texts": [value]}),
        "open inference": client.post("/v2/models/tiny-bilstm/infer", json=v2),
    }


@pytest.mark.parametrize(("case", "value"), CASES, ids=[c for c, _ in CASES])
def test_every_protocol_gives_the_same_verdict(client: TestClient, case: str, value: Any) -> None:
    got = answers(client, value)
    scored = {name: r.status_code == 200 for name, r in got.items()}
    assert len(set(scored.values())) == 1, {n: (r.status_code, r.text[:200]) for n, r in got.items()}
    if not next(iter(scored.values())):
        for name in ("predict text", "predict texts", "explain"):
            error = got[name].json()["error"]
            assert got[name].status_code == 422 and error["code"] == "validation_error", name
            assert error["details"][0]["field"] in ("text", "texts[0]")
        oip = got["open inference"]
        assert oip.status_code == 400 and set(oip.json()) == {"error"} and oip.json()["error"].startswith("text[0]")
        messages = {
            got["predict texts"].json()["error"]["details"][0]["message"],
            oip.json()["error"].split(": ", 1)[1],
        }
        assert len(messages) == 1, messages  # the same rule, in the same words


def test_the_same_limits_on_counts(client: TestClient) -> None:
    four = ["a", "b", "c", "d"]
    assert (
        client.post("/predict", json={"texts": four}).json()["error"]["message"]
        == "texts: must hold 1 to 3 texts, not 4"
    )
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [4], "data": four}]}
    assert client.post("/v2/models/tiny-bilstm/infer", json=v2).json() == {
        "error": "text: must hold 1 to 3 texts, not 4"
    }
    assert client.post("/explain", json={"texts": four}).status_code == 422


def test_scores_agree_across_protocols(client: TestClient) -> None:
    texts = ["Loved it.", "\x1c", "Dreadful."]
    predicted = [
        p["probabilities"]["positive"] for p in client.post("/predict", json={"texts": texts}).json()["predictions"]
    ]
    explained = client.post("/explain", json={"texts": texts}).json()["explanations"]
    v2 = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": texts}],
        "outputs": [{"name": "probabilities"}],
    }
    labels = client.get("/model").json()["labels"]
    flat = client.post("/v2/models/tiny-bilstm/infer", json=v2).json()["outputs"][0]["data"]
    inferred = flat[labels.index("positive") :: len(labels)]
    assert inferred == pytest.approx(predicted, abs=1e-6)
    assert [e["prediction"]["probabilities"]["positive"] for e in explained] == pytest.approx(predicted, abs=1e-6)


def test_engine_refusals_have_the_same_status_in_every_protocol(tiny_model_dir: Path) -> None:
    """Not ready (503) and unauthorised (401) are the same outcome everywhere; each protocol writes its body."""
    settings = Settings(model_dir=tiny_model_dir, warmup_runs=10_000, api_key="k")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
        calls: dict[str, Callable[[dict[str, str]], Any]] = {
            "/predict": lambda h: c.post("/predict", json={"text": "x"}, headers=h),
            "/explain": lambda h: c.post("/explain", json={"text": "x"}, headers=h),
            "/analyze": lambda h: c.post("/analyze", json={"text": "x"}, headers=h),
            "/v2 infer": lambda h: c.post("/v2/models/tiny-bilstm/infer", content=json.dumps(v2), headers=h),
        }
        for name, call in calls.items():
            assert call({}).status_code == 401, name
            warming = call({"Authorization": "Bearer k"})
            assert warming.status_code == 503 and warming.headers["retry-after"] == "1", name
            body = warming.json()["error"]
            assert (body if isinstance(body, str) else body["message"]) == "the model is warming up"


def test_a_full_queue_is_429_with_retry_after_in_every_protocol(tiny_model_dir: Path) -> None:
    """The first request's 4 texts fill /predict's queue and the first /analyze's 3 (2 sentences, the
    document whole) fill the document lane (the batch is held open for 1 s, the most the settings allow); the
    next request of every protocol is refused the same way, each in its own error body."""
    settings = Settings(
        model_dir=tiny_model_dir, max_queue=4, max_client_batch=4, max_wait_ms=1000, max_sentences=2, max_documents=1
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c, ThreadPoolExecutor(2) as pool:
        wait_until_ready(c)
        batcher = app.state.engine.batcher
        first = pool.submit(c.post, "/predict", json={"texts": ["a", "b", "c", "d"]})
        # Queued, its batch held open for the second that max_wait_ms allows:
        until(lambda: batcher.budget.texts == 4, 10, lambda: "the first /predict was not queued")
        first_document = pool.submit(c.post, "/analyze", json={"text": "One. Two."})
        until(lambda: batcher.lanes["analyze"].budget.texts == 3, 10, lambda: "the first /analyze was not queued")
        v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["one more"]}]}
        refused = [
            c.post("/predict", json={"text": "one more"}),
            c.post("/v2/models/tiny-bilstm/infer", json=v2),
            c.post("/analyze", json={"text": "One more. And another."}),
        ]
        for answer in refused:
            assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
        assert refused[0].json()["error"]["code"] == refused[2].json()["error"]["code"] == "overloaded"
        assert refused[1].json()["error"].startswith("the queue is full (4 texts)")
        assert first.result().status_code == first_document.result().status_code == 200
        assert c.post("/analyze", json={"text": "One more. And another."}).status_code == 200  # nothing lost


@pytest.mark.parametrize(
    "model_dir", [SHIPPED_MODEL, BINARY_MODEL], ids=["three labels (shipped)", "two labels (3.0.0)"]
)
def test_a_model_of_any_label_set_is_served_alike_through_every_protocol(model_dir: Path) -> None:
    """The default three-label model and the binary 3.0.0 directory, through /predict, /explain, /analyze and
    /v2: the labels come from the model's card everywhere, and every protocol gives the same probabilities."""
    texts = ["Loved it, a wonderful film.", "The meeting is at 3 pm on Tuesday.", "Awful, a waste of money."]
    with TestClient(create_app(Settings(model_dir=model_dir)), raise_server_exceptions=False) as c:
        wait_until_ready(c)
        info = c.get("/model").json()
        labels, name = info["labels"], info["name"]
        predicted = c.post("/predict", json={"texts": texts}).json()["predictions"]
        assert all(list(p["probabilities"]) == labels for p in predicted)
        explained = c.post("/explain", json={"texts": texts}).json()["explanations"]
        analyzed = c.post("/analyze", json={"documents": texts}).json()["documents"]
        v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": texts}]}
        outputs = {o["name"]: o for o in c.post(f"/v2/models/{name}/infer", json=v2).json()["outputs"]}
        assert outputs["probabilities"]["shape"] == [3, len(labels)]
        assert c.get(f"/v2/models/{name}").json()["parameters"]["labels"] == labels
        for i, p in enumerate(predicted):
            row = outputs["probabilities"]["data"][i * len(labels) : (i + 1) * len(labels)]
            assert row == pytest.approx([p["probabilities"][x] for x in labels], abs=1e-6)
            assert outputs["label"]["data"][i] == p["label"] == explained[i]["prediction"]["label"]
            assert set(explained[i]["words"][0]["weights"]) == set(labels)
            (sentence,) = analyzed[i]["sentences"]
            assert sentence["probabilities"] == pytest.approx(p["probabilities"], abs=1e-6)
        page = c.get("/").text
        assert "by-sentence" in page and "labels[labels.length - 1]" in page  # the page reads the labels too
