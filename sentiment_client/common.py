"""The request plumbing both clients share: base URL, API key, retry budget and the server's limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sentiment_client.errors import RetryBudget

DEFAULT_MAX_DOCUMENTS = 32  # /analyze documents per request of a server whose /model does not say


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
        self._limits: dict[str, int] | None = None

    def retry_budget(self) -> RetryBudget:
        return RetryBudget(self.max_retries, self.max_retry_wait)
