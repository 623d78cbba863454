"""Every failure a client call can raise: a ``SentimentError`` subclass carrying the server's status, code,
message and request id; and the retry policy that decides which failures are worth another attempt."""

from __future__ import annotations

from typing import Any

import httpx


class SentimentError(Exception):
    """A request failed; ``status`` is the HTTP status (0 when no answer came), ``message`` the server's words."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status, self.code, self.message = status, code, message
        self.request_id, self.details = request_id, details or []


class InvalidInputError(SentimentError):
    """The server refused the input (400, 413, 415, 422): the message names the field and the limit."""


class AuthenticationError(SentimentError):
    """Missing or wrong API key (401)."""


class OverloadedError(SentimentError):
    """Still 429 or 503 when the retry budget ran out."""


class NotFoundError(SentimentError):
    """No such resource (404): a job that does not exist, or is another key's."""


class ConflictError(SentimentError):
    """Not possible in this state (409): the results of a job that has not finished."""


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
        AuthenticationError
        if status == 401
        else InvalidInputError
        if status in (400, 413, 415, 422)
        else OverloadedError
        if status in RETRIED_STATUSES
        else NotFoundError
        if status == 404
        else ConflictError
        if status == 409
        else ServerError
    )
    return kind(status, code, message, request_id, details)


class RetryBudget:
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
        return min(0.25 * 2.0**self.attempt, 8.0)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
