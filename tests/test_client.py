"""The Python client (sync and async) against a real server process over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentiment_client import (
    AsyncSentimentClient,
    AuthenticationError,
    ConnectionFailedError,
    Document,
    InvalidInputError,
    Language,
    OverloadedError,
    SentimentClient,
)
from tests.support import launch, metric, pick_free_port, start_server, stop_server

pytestmark = pytest.mark.slow
TEXTS = [f"Review {i}: " + ("a wonderful, moving film" if i % 2 else "a dull, tedious mess") for i in range(10)]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[str]:
    """Small request batches (4 texts), a queue of one request, one inference thread and 100 sentences per
    /analyze, so splitting and 429s are easy to reach."""
    base, process = launch(
        tiny_model_dir,
        SENTIMENT_MAX_CLIENT_BATCH="4",
        SENTIMENT_MAX_QUEUE="4",
        SENTIMENT_INFERENCE_WORKERS="1",
        SENTIMENT_API_KEY="s3cret",
        SENTIMENT_MAX_EXPLAIN_TEXTS="2",
        SENTIMENT_MAX_SENTENCES="100",
    )
    yield base
    stop_server(process)


def rejected(base: str) -> float:
    return metric(base, 'sentiment_rejected_requests_total{reason="queue_full"}')


def test_predict_splits_by_the_server_limit_and_keeps_order(server: str) -> None:
    with SentimentClient(server, api_key="s3cret") as client:
        assert client.limits()["max_client_batch"] == 4
        together = client.predict(TEXTS)  # 3 requests of 4, 4 and 2 texts
        one_by_one = [client.predict_one(t) for t in TEXTS]
    assert [p.label for p in together] == [p.label for p in one_by_one]
    assert [p.score for p in together] == pytest.approx([p.score for p in one_by_one], abs=1e-5)
    assert len(together) == len(TEXTS)


def test_explain_returns_word_weights(server: str) -> None:
    with SentimentClient(server, api_key="s3cret") as client:
        explanations = client.explain(TEXTS[:3])  # two requests: the server explains at most 2 texts at once
    assert len(explanations) == 3
    for text, e in zip(TEXTS[:3], explanations, strict=True):
        assert [text[w.start : w.end] for w in e.words] == [w.text for w in e.words]
        assert all(w.weights is not None for w in e.words)


def test_analyze_reads_documents_sentence_by_sentence_sync_and_async(server: str) -> None:
    documents = ["Loved it. Hated the ending!", "", "Das Essen war schrecklich und der Kellner unhöflich."]
    with SentimentClient(server, api_key="s3cret") as client:
        got = client.analyze(documents)
        assert client.predict(["The meeting is at 3 pm on Tuesday."])[0].language == Language("en", True)

    async def run() -> list[Document]:
        async with AsyncSentimentClient(server, api_key="s3cret") as client:
            return await client.analyze(documents)

    assert asyncio.run(run()) == got
    assert [d.index for d in got] == [0, 1, 2]
    assert [s.text for s in got[0].sentences] == ["Loved it.", "Hated the ending!"]
    assert all(documents[0][s.offset : s.offset + s.length] == s.text for s in got[0].sentences)
    assert got[0].label in ("negative", "neutral", "positive", "mixed") and got[0].error is None
    assert got[1].error is not None and got[1].error.code == "empty_document" and got[1].sentences == []
    assert got[2].language == Language("de", False)


def test_analyze_splits_by_the_published_sentence_limit(server: str) -> None:
    """More sentences than one /analyze takes (the server's max_sentences) go in as many requests as needed,
    sync and async, and every document comes back in order."""
    documents = [" ".join(f"Sentence {j} of review {i} was fine." for j in range(40)) for i in range(12)]

    async def run() -> list[Document]:
        async with AsyncSentimentClient(server, api_key="s3cret") as client:
            return await client.analyze(documents)

    with SentimentClient(server, api_key="s3cret") as client:
        assert client.limits()["max_sentences"] * 2 < 12 * 40  # one request could not hold them
        got = client.analyze(documents)
    assert asyncio.run(run()) == got
    assert [d.index for d in got] == list(range(12))
    assert all(d.error is None and len(d.sentences) == 40 for d in got)


def test_errors_are_typed_and_carry_the_server_message(server: str) -> None:
    with SentimentClient(server, api_key="s3cret") as client:
        with pytest.raises(InvalidInputError) as invalid:
            client.predict(["fine", "   "])
        assert invalid.value.status == 422 and "texts[1]" in invalid.value.message
        assert invalid.value.request_id
        with pytest.raises(TypeError):
            client.predict("a string, not a list")
    with SentimentClient(server, api_key="wrong") as client, pytest.raises(AuthenticationError) as auth:
        client.predict_one("hello")
    assert auth.value.status == 401 and "API key" in auth.value.message


def test_async_client_retries_429_until_everything_is_scored(server: str) -> None:
    before = rejected(server)

    async def run() -> list[list[str]]:
        async with AsyncSentimentClient(server, api_key="s3cret", max_retries=50, max_retry_wait=60) as client:
            batches = [[f"{t} #{k}" for t in TEXTS[:4]] for k in range(200)]
            results = await asyncio.gather(*(client.predict(b) for b in batches))
            return [[p.label for p in r] for r in results]

    labels = asyncio.run(run())
    assert len(labels) == 200 and all(len(r) == 4 for r in labels)
    assert rejected(server) > before, "the queue never filled, so no retry was exercised"


def test_retry_budget_ends_in_a_typed_error(tiny_model_dir: Path) -> None:
    # A server that stays not-ready for a long warm-up answers 503 with Retry-After: 1.
    port = pick_free_port()
    process = start_server(tiny_model_dir, port, None, SENTIMENT_WARMUP_RUNS="10000")
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with SentimentClient(base, max_retries=2, max_retry_wait=5) as client, pytest.raises(OverloadedError) as e:
            client.predict_one("hello")
        assert e.value.status == 503 and e.value.code == "not_ready"
    finally:
        stop_server(process)


def test_no_server_is_a_connection_error() -> None:
    base = f"http://127.0.0.1:{pick_free_port()}"
    with SentimentClient(base, max_retries=2, max_retry_wait=2) as client, pytest.raises(ConnectionFailedError):
        client.predict_one("hello")
