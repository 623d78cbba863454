"""The request plumbing both clients share: base URL, API key, retry budget and the server's limits."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from sentiment_client.errors import RetryBudget

DEFAULT_MAX_DOCUMENTS = 32  # /analyze documents per request of a server whose /model does not say
DEFAULT_MAX_SENTENCES = 1024  # /analyze sentences per request, likewise
_SENTENCE_END = re.compile(r"[.!?\u2026]+(?=\s|$)|\n")


def sentence_estimate(document: str) -> int:
    """About how many sentences the service will find in ``document``: its sentence ends and line breaks."""
    return len(_SENTENCE_END.findall(document)) + 1


def document_batches(documents: Sequence[str], limits: dict[str, int]) -> Iterator[tuple[int, list[str]]]:
    """(where it starts, its documents) for each /analyze request: at most the server's published documents
    per request, and about at most its sentences per request (estimated; a request the server still finds
    over its limit is split again by the client). A document over the limit goes alone: it gets its error."""
    most_documents = limits.get("max_documents", DEFAULT_MAX_DOCUMENTS)
    most_sentences = limits.get("max_sentences", DEFAULT_MAX_SENTENCES)
    start, sentences = 0, 0
    batch: list[str] = []
    for i, document in enumerate(documents):
        count = min(sentence_estimate(document), most_sentences)
        if batch and (len(batch) >= most_documents or sentences + count > most_sentences):
            yield start, batch
            start, batch, sentences = i, [], 0
        batch.append(document)
        sentences += count
    if batch:
        yield start, batch


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings; use predict_one(text) for a single text")


class ClientBase:
    def __init__(
        self, base_url: str, api_key: str | None, max_retries: int, max_retry_wait: float, batch_size: int | None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries, self.max_retry_wait, self.batch_size = max_retries, max_retry_wait, batch_size
        self._model_info: dict[str, Any] | None = None

    def retry_budget(self) -> RetryBudget:
        return RetryBudget(self.max_retries, self.max_retry_wait)
