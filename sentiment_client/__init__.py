"""Python client for the sentiment service: ``SentimentClient`` and its asyncio twin ``AsyncSentimentClient``.

    from sentiment_client import SentimentClient

    with SentimentClient("http://localhost:8000", api_key=None, timeout=30) as client:
        for p in client.predict(["Loved it.", "Dull and far too long."]):
            print(p.label, p.score)

``analyze(documents)`` reads documents sentence by sentence (a verdict per document, ``mixed`` included).
``submit_job(path)`` sends a file too big for one request as a job (``Job``: ``wait()``, ``results()``,
``download()``, ``summary()``, ``cancel()``).
``predict`` splits long lists by the server's own limit (read once from ``GET /model``) and keeps input
order. 429 and 503 answers, and connection failures, are retried: after the server's ``Retry-After`` when it
sends one, else with exponential back-off, until ``max_retries`` attempts or ``max_retry_wait`` seconds of
waiting are spent. Every failure raises a :class:`SentimentError` subclass carrying the server's message.
"""

from sentiment_client.aio import AsyncSentimentClient
from sentiment_client.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    SentimentError,
    ServerError,
)
from sentiment_client.jobs import Job, JobFailedError
from sentiment_client.results import Document, DocumentError, Explanation, Language, Prediction, Sentence, WordWeight
from sentiment_client.sync import SentimentClient

__all__ = [
    "AsyncSentimentClient",
    "AuthenticationError",
    "ConflictError",
    "ConnectionFailedError",
    "Document",
    "DocumentError",
    "Explanation",
    "InvalidInputError",
    "Job",
    "JobFailedError",
    "Language",
    "NotFoundError",
    "OverloadedError",
    "Prediction",
    "Sentence",
    "SentimentClient",
    "SentimentError",
    "ServerError",
    "WordWeight",
]
