"""Python client for the sentiment service: ``SentimentClient`` and its asyncio twin ``AsyncSentimentClient``.

    from sentiment_client import SentimentClient

    with SentimentClient("http://localhost:8000", api_key=None, timeout=30) as client:
        for p in client.predict(["Loved it.", "Dull and far too long."]):
            print(p.label, p.score)

``predict`` splits long lists by the server's own limit (read once from ``GET /model``) and keeps input
order. 429 and 503 answers, and connection failures, are retried: after the server's ``Retry-After`` when it
sends one, else with exponential back-off, until ``max_retries`` attempts or ``max_retry_wait`` seconds of
waiting are spent. Every failure raises a :class:`SentimentError` subclass carrying the server's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "AsyncSentimentClient", "AuthenticationError", "ConnectionFailedError", "Explanation", "InvalidInputError",
    "OverloadedError", "Prediction", "SentimentClient", "SentimentError", "ServerError", "WordWeight",
]


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    probabilities: dict[str, float]
    tokens: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class WordWeight:
    text: str
    start: int
    end: int
    weights: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Explanation:
    prediction: Prediction
    words: list[WordWeight]
    explained_tokens: int
    capped: bool


class SentimentError(Exception):
    """A request failed; ``status`` is the HTTP status (0 when no answer came), ``message`` the server's words."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status, self.code, self.message = status, code, message
        self.request_id, self.details = request_id, details or []


class InvalidInputError(SentimentError):
    """The server refused the input (400, 413, 415, 422): the message names the field and the limit."""


class AuthenticationError(SentimentError):
    """Missing or wrong API key (401)."""


class OverloadedError(SentimentError):
    """Still 429 or 503 when the retry budget ran out."""


class ServerError(SentimentError):
    """Any other failed answer from the server."""


class ConnectionFailedError(SentimentError):
    """No answer from the server (connection refused, reset or timed out) within the retry budget."""


RETRIED_STATUSES = frozenset({429, 503})


def error_from(response: httpx.Response) -> SentimentError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        request_id, details = error.get("request_id"), error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, request_id, details = "http_error", response.text[:200] or response.reason_phrase, None, None
    status = response.status_code
    kind: type[SentimentError] = (
        AuthenticationError if status == 401 else
        InvalidInputError if status in (400, 413, 415, 422) else
        OverloadedError if status in RETRIED_STATUSES else ServerError)
    return kind(status, code, message, request_id, details)


class _Retry:
    """How long to wait before the next attempt, or the error to raise when the budget is spent."""

    def __init__(self, max_retries: int, max_wait: float) -> None:
        self.attempt, self.waited = 0, 0.0
        self.max_retries, self.max_wait = max_retries, max_wait

    def delay_after(self, response: httpx.Response | None = None, failure: Exception | None = None) -> float:
        if response is not None:
            error = error_from(response)
            if response.status_code not in RETRIED_STATUSES:
                raise error
            delay = _retry_after(response) or self._backoff()
        else:
            error = ConnectionFailedError(0, "connection_failed", f"no answer from the server: {failure!r}")
            delay = self._backoff()
        self.attempt += 1
        if self.attempt > self.max_retries or self.waited + delay > self.max_wait:
            raise error from failure
        self.waited += delay
        return delay

    def _backoff(self) -> float:
        return min(0.25 * 2 ** self.attempt, 8.0)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings; use predict_one(text) for a single text")


def _prediction(data: dict[str, Any]) -> Prediction:
    return Prediction(data["label"], data["score"], data["probabilities"], data["tokens"], data["truncated"])


def _explanation(data: dict[str, Any]) -> Explanation:
    words = [WordWeight(w["text"], w["start"], w["end"], w["weights"]) for w in data["words"]]
    return Explanation(_prediction(data["prediction"]), words, data["explained_tokens"], data["capped"])


class _Base:
    def __init__(self, base_url: str, api_key: str | None, max_retries: int, max_retry_wait: float,
                 batch_size: int | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries, self.max_retry_wait, self.batch_size = max_retries, max_retry_wait, batch_size
        self._limits: dict[str, int] | None = None

    def _retry(self) -> _Retry:
        return _Retry(self.max_retries, self.max_retry_wait)


class SentimentClient(_Base):
    """Blocking client. ``batch_size`` overrides the server's per-request limit (it can only be lower)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0, max_retries: int = 5,
                 max_retry_wait: float = 30.0, batch_size: int | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, max_retries, max_retry_wait, batch_size)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in input order."""
        _check_texts(texts)
        size = self.batch_size or self.limits()["max_client_batch"]
        return [_prediction(p) for chunk in _chunks(texts, size)
                for p in self._request("POST", "/predict", {"texts": chunk})["predictions"]]

    def predict_one(self, text: str) -> Prediction:
        return _prediction(self._request("POST", "/predict", {"text": text})["predictions"][0])

    def explain(self, texts: Sequence[str]) -> list[Explanation]:
        """Word weights for each text (occlusion; see the service's /explain)."""
        _check_texts(texts)
        size = self.limits()["max_explain_texts"]
        return [_explanation(e) for chunk in _chunks(texts, size)
                for e in self._request("POST", "/explain", {"texts": chunk})["explanations"]]

    def limits(self) -> dict[str, int]:
        if self._limits is None:
            self._limits = self._request("GET", "/model")["limits"]
        return self._limits

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        retry = self._retry()
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                time.sleep(retry.delay_after(failure=exc))
                continue
            if response.is_success:
                return response.json()
            time.sleep(retry.delay_after(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSentimentClient(_Base):
    """The asyncio twin of :class:`SentimentClient`: the same methods, awaited."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0, max_retries: int = 5,
                 max_retry_wait: float = 30.0, batch_size: int | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, max_retries, max_retry_wait, batch_size)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout,
                                       transport=transport)

    async def predict(self, texts: Sequence[str]) -> list[Prediction]:
        _check_texts(texts)
        size = self.batch_size or (await self.limits())["max_client_batch"]
        out: list[Prediction] = []
        for chunk in _chunks(texts, size):
            answer = await self._request("POST", "/predict", {"texts": chunk})
            out += [_prediction(p) for p in answer["predictions"]]
        return out

    async def predict_one(self, text: str) -> Prediction:
        return _prediction((await self._request("POST", "/predict", {"text": text}))["predictions"][0])

    async def explain(self, texts: Sequence[str]) -> list[Explanation]:
        _check_texts(texts)
        size = (await self.limits())["max_explain_texts"]
        out: list[Explanation] = []
        for chunk in _chunks(texts, size):
            answer = await self._request("POST", "/explain", {"texts": chunk})
            out += [_explanation(e) for e in answer["explanations"]]
        return out

    async def limits(self) -> dict[str, int]:
        if self._limits is None:
            self._limits = (await self._request("GET", "/model"))["limits"]
        return self._limits

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        retry = self._retry()
        while True:
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                await asyncio.sleep(retry.delay_after(failure=exc))
                continue
            if response.is_success:
                return response.json()
            await asyncio.sleep(retry.delay_after(response))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSentimentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
