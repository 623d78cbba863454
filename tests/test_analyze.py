"""POST /analyze and the language check, through the real app and a real onnxruntime session: documents
read sentence by sentence with exact offsets, per-document errors in a 200, whole-request refusals, the
language on every protocol, refuse mode on every protocol, and the metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support import SHIPPED_MODEL, gauge, wait_until_ready

GERMAN = "Das Essen war schrecklich und der Kellner unhöflich."
REVIEW = "The staff were friendly. The room was dirty!\n- pool: great 😍\n- wifi: none Never again."


@pytest.fixture
def make_client(tiny_model_dir: Path) -> Callable[..., Any]:
    @contextmanager
    def factory(model_dir: Path = tiny_model_dir, **overrides: Any) -> Iterator[TestClient]:
        with TestClient(create_app(Settings(model_dir=model_dir, **overrides)), raise_server_exceptions=False) as c:
            wait_until_ready(c)
            yield c

    return factory


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


def test_documents_come_back_sentence_by_sentence_with_exact_offsets(client: TestClient) -> None:
    documents = [REVIEW, "Naïve cafe\u0301 visit 👍🏽 Great coffee. 東京の店は良い。", "one line, no stop"]
    body = client.post("/analyze", json={"documents": documents}).json()
    assert body["model"] == {"name": "tiny-bilstm", "version": "0.0.1"}
    assert [d["index"] for d in body["documents"]] == [0, 1, 2]
    labels = {"negative", "neutral", "positive"}
    for document, result in zip(documents, body["documents"], strict=True):
        assert result["label"] in labels | {"mixed"}
        assert set(result["probabilities"]) == labels and sum(result["probabilities"].values()) == pytest.approx(1)
        for sentence in result["sentences"]:
            assert document[sentence["offset"] : sentence["offset"] + sentence["length"]] == sentence["text"]
            assert sentence["label"] == max(sentence["probabilities"], key=sentence["probabilities"].get)
    assert [d["language"]["supported"] for d in body["documents"]] == [True, False, True]  # [1] is half Japanese
    assert [s["text"] for s in body["documents"][0]["sentences"]] == [
        "The staff were friendly.",
        "The room was dirty!",
        "- pool: great 😍",
        "- wifi: none Never again.",
    ]
    single = client.post("/analyze", json={"text": REVIEW}).json()
    assert single["documents"][0]["sentences"] == body["documents"][0]["sentences"]


def test_sentences_score_as_the_same_texts_through_predict(client: TestClient) -> None:
    analyzed = client.post("/analyze", json={"text": REVIEW}).json()["documents"][0]["sentences"]
    predicted = client.post("/predict", json={"texts": [s["text"] for s in analyzed]}).json()["predictions"]
    for sentence, prediction in zip(analyzed, predicted, strict=True):
        assert sentence["probabilities"] == pytest.approx(prediction["probabilities"], abs=1e-6)


def test_a_document_that_cannot_be_scored_is_its_own_error_and_the_others_are_scored(
    make_client: Callable[..., Any],
) -> None:
    with make_client(max_document_chars=60, max_sentences=4) as client:
        documents = ["Fine.", " \n\t ", "x" * 61, "Good food.", "One. Two. Three. Four. Five.", "\x1c"]
        response = client.post("/analyze", json={"documents": documents})
        assert response.status_code == 200
        results = response.json()["documents"]
        predicted = client.post("/predict", json={"text": "\x1c"})
    codes = [r.get("error", {}).get("code") for r in results]
    assert codes == [None, "empty_document", "document_too_long", None, "too_many_sentences", None]
    assert "documents[2] has 61 characters; the limit is 60" in results[2]["error"]["message"]
    assert "documents[4] has 5 sentences; the limit is 4" in results[4]["error"]["message"]
    assert "sentences" in results[0] and "sentences" in results[3] and "sentences" not in results[1]
    # what /predict scores, /analyze scores: one verdict for a text of one U+001C on every route
    assert predicted.status_code == 200
    assert [s["text"] for s in results[5]["sentences"]] == ["\x1c"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"documents": []}, "documents", "must hold 1 to 3 documents, not 0"),
        ({"documents": ["a.", "b.", "c.", "d."]}, "documents", "must hold 1 to 3 documents, not 4"),
        ({"documents": ["fine", 7]}, "documents[1]", "must be a string, not a number"),
        ({"documents": "not a list"}, "documents", "must be an array of strings"),
        ({"text": None}, "text", "must be a string, not null"),
        ({"texts": ["wrong field"]}, "texts", "unknown field"),
        ({"text": "a", "documents": ["b"]}, None, "exactly one of"),
        ({"documents": ["One. Two. Three.", "Four. Five."]}, "documents", "holds 5 sentences in all; the limit is 4"),
    ],
)
def test_requests_wrong_as_a_whole_are_refused_naming_the_field_and_limit(
    make_client: Callable[..., Any], body: dict[str, Any], field: str | None, fragment: str
) -> None:
    with make_client(max_documents=3, max_sentences=4) as client:
        response = client.post("/analyze", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert fragment in error["message"]
        assert error["details"][0]["field"] == field
        assert (
            client.post("/analyze", content=b"{not json", headers={"content-type": "application/json"}).status_code
            == 422
        )
        assert client.post("/analyze", content=b"x", headers={"content-type": "text/plain"}).status_code == 415


def test_every_answer_says_the_language_and_whether_it_is_supported(client: TestClient) -> None:
    predictions = client.post("/predict", json={"texts": ["The meeting is at 3 pm.", GERMAN, "ok"]}).json()
    assert [p["language"] for p in predictions["predictions"]] == [
        {"code": "en", "supported": True},
        {"code": "de", "supported": False},
        {"code": None, "supported": True},  # too short to tell is not unsupported
    ]
    analyzed = client.post("/analyze", json={"documents": [f"{GERMAN} {GERMAN}"]}).json()["documents"][0]
    assert analyzed["language"] == {"code": "de", "supported": False} and len(analyzed["sentences"]) == 2
    explained = client.post("/explain", json={"text": GERMAN}).json()["explanations"][0]
    assert explained["prediction"]["language"] == {"code": "de", "supported": False}
    infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["Loved the film.", GERMAN]}]}
    outputs = {o["name"]: o["data"] for o in client.post("/v2/models/tiny-bilstm/infer", json=infer).json()["outputs"]}
    assert outputs["language"] == ["en", "de"] and outputs["language_supported"] == [True, False]
    metrics = client.get("/metrics").text
    # scored texts: the German text of /predict, the document of /analyze (read whole, not sentence by
    # sentence), the text of /v2 (explanations are not batches of the scoring queue)
    assert gauge(metrics, r'^sentiment_texts_by_language_total\{supported="no"\} (\S+)$') == 3
    assert gauge(metrics, r'^sentiment_texts_by_language_total\{supported="unknown"\} (\S+)$') >= 1


def test_refuse_mode_refuses_unsupported_texts_on_every_protocol(make_client: Callable[..., Any]) -> None:
    with make_client(unsupported_language="refuse") as client:
        response = client.post("/predict", json={"texts": ["Loved the film.", GERMAN]})
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == "texts[1]"
        assert "'de'" in response.json()["error"]["message"]
        infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": [GERMAN, "Loved it."]}]}
        refused = client.post("/v2/models/tiny-bilstm/infer", json=infer)
        assert refused.status_code == 400 and refused.json()["error"].startswith(
            "text[0]: appears to be in language 'de'"
        )
        assert client.post("/explain", json={"text": GERMAN}).status_code == 422
        french = "Le service était très lent et le personnel vraiment désagréable ce soir."
        every = client.post("/predict", json={"texts": [GERMAN, "Loved the film.", french]}).json()["error"]
        assert [d["field"] for d in every["details"]] == ["texts[0]", "texts[2]"]  # every foreign text, named
        assert "texts[0]: appears to be in language 'de'" in every["message"] and "'fr'" in every["message"]
        infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": [GERMAN, french]}]}
        both = client.post("/v2/models/tiny-bilstm/infer", json=infer).json()["error"]
        assert "text[0]:" in both and "text[1]:" in both
        results = client.post("/analyze", json={"documents": [GERMAN, "Loved the film.", "ok"]}).json()["documents"]
        assert results[0]["error"]["code"] == "unsupported_language" and results[0]["language"]["code"] == "de"
        assert "sentences" in results[1] and "sentences" in results[2]  # "ok": too short to tell, scored
        assert client.post("/predict", json={"text": "ok"}).status_code == 200


def test_the_shipped_model_reads_a_review_with_praise_and_complaint_as_mixed(make_client: Callable[..., Any]) -> None:
    with make_client(model_dir=SHIPPED_MODEL) as client:
        document = "The staff were wonderful and so friendly. The room was filthy and the bed was awful."
        result = client.post("/analyze", json={"text": document}).json()["documents"][0]
        assert result["label"] == "mixed", json.dumps(result)
        assert [s["label"] for s in result["sentences"]] == ["positive", "negative"]
        plain = client.post("/analyze", json={"text": "I loved this hotel. The view was wonderful."}).json()
        assert plain["documents"][0]["label"] == "positive"
