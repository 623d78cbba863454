"""POST /explain through the real app, on the shipped model (word weights need a model that learned words)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support import SHIPPED_MODEL, wait_until_ready


def ready_client(**overrides: Any) -> TestClient:
    client = TestClient(create_app(Settings(model_dir=SHIPPED_MODEL, **overrides)), raise_server_exceptions=False)
    client.__enter__()
    wait_until_ready(client)
    return client


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    c = ready_client()
    yield c
    c.__exit__(None, None, None)


def explain(client: TestClient, *texts: str) -> list[dict[str, Any]]:
    response = client.post("/explain", json={"texts": list(texts)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["method"] == "occlusion"
    explanations: list[dict[str, Any]] = body["explanations"]
    return explanations


def weight(explanation: dict[str, Any], word: str, label: str = "positive") -> float:
    [match] = [w for w in explanation["words"] if w["text"].lower() == word]
    return float(match["weights"][label])


@pytest.mark.parametrize(
    ("word", "side", "other"),
    [
        ("great", "positive", "negative"),
        ("wonderful", "positive", "negative"),
        ("awful", "negative", "positive"),
        ("boring", "negative", "positive"),
    ],
)
def test_a_clearly_charged_word_in_a_neutral_frame_pushes_its_way(
    client: TestClient, word: str, side: str, other: str
) -> None:
    [e] = explain(client, f"I watched the movie on Sunday. It was {word}.")
    w = weight(e, word, side)
    assert w > 0
    # It moves the balance between the polarities its way (with three labels, both polarities may gain on
    # neutral when an opinion word comes in: "It was ." is neutral).
    assert w > weight(e, word, other)
    others = [abs(x["weights"][side]) for x in e["words"] if x["text"].lower() != word]
    assert w > max(others), "the charged word should outweigh every neutral word"


def test_offsets_map_back_to_the_exact_substrings(client: TestClient) -> None:
    """Whole words, as sent, even where the sub-word vocabulary spells one word with several pieces."""
    text = "Café <br /> was ﬁne 😀, but DON'T   miss\tthe endinggg of Zorblaxian!"
    [e] = explain(client, text)
    words = ["Café", "was", "ﬁne", "😀", ",", "but", "DON'T", "miss", "the", "endinggg", "of", "Zorblaxian", "!"]
    assert [w["text"] for w in e["words"]] == words
    for w in e["words"]:
        assert text[w["start"] : w["end"]] == w["text"]
        assert w["weights"] is not None
    assert e["prediction"]["tokens"] > len(e["words"])  # the misspelled and made-up words come in pieces
    assert e["explained_tokens"] == len(words)


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_a_word_keeps_its_combining_marks(client: TestClient, form: Literal["NFC", "NFD"]) -> None:
    text = unicodedata.normalize(form, "Le café était très bon, déjà vu")
    [e] = explain(client, text)
    words = [w["text"] for w in e["words"]]
    assert words == [unicodedata.normalize(form, w) for w in ["Le", "café", "était", "très", "bon", ",", "déjà", "vu"]]
    assert all(text[w["start"] : w["end"]] == w["text"] for w in e["words"])


def test_explanations_are_deterministic_and_agree_with_predict(client: TestClient) -> None:
    text = "The plot was thin but the acting was wonderful and I loved it."
    first, second = explain(client, text), explain(client, text)
    assert first == second
    predicted = client.post("/predict", json={"text": text}).json()["predictions"][0]
    assert first[0]["prediction"]["label"] == predicted["label"]
    assert first[0]["prediction"]["score"] == pytest.approx(predicted["score"], abs=1e-5)


def test_a_long_text_is_capped_and_says_so() -> None:
    client = ready_client(max_explain_tokens=5)
    try:
        [e] = explain(client, "one two three four five six seven eight nine ten")
    finally:
        client.__exit__(None, None, None)
    assert e["capped"] is True and e["explained_tokens"] == 5
    assert [w["weights"] is None for w in e["words"]] == [True] * 5 + [False] * 5


def test_explain_has_its_own_smaller_batch_limit(client: TestClient) -> None:
    response = client.post("/explain", json={"texts": ["fine"] * 9})
    assert response.status_code == 422
    assert "texts" in response.json()["error"]["message"] and "8" in response.json()["error"]["message"]
    assert client.post("/explain", json={"text": " "}).status_code == 422
    limits = client.get("/model").json()["limits"]
    assert limits["max_explain_texts"] == 8 and limits["max_client_batch"] == 64


def test_explain_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/explain"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExplainRequest")
    assert spec["components"]["schemas"]["ExplainRequest"]["properties"]["texts"]["maxItems"] == 8
    assert "occlusion" in operation["summary"] and "n + 1 predictions" in operation["description"]


def test_the_page_is_served_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
    assert 'href="docs"' in page.text
