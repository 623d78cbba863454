"""Every failure a client can see, and how it leaves: the one place that maps failures to statuses.

``outcome`` turns whatever a request raised (the engine's refusals, invalid input, a body that never came,
a client that left) into an :class:`ApiError`; a protocol only chooses the body its errors are written in
(``ErrorShape``): this service's own JSON, ``{"error": {"code", "message", "details", "request_id"}}``, or
the Open Inference Protocol's ``{"error": "message"}``. Invalid input is 422 in our JSON and 400 in the
Open Inference Protocol (its convention); everything else has the same status in both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from service.batcher import InferenceError, NotAcceptingError
from service.budget import QueueFullError
from service.config import Settings
from service.engine import NotReadyError
from service.metrics import Metrics
from service.validation import InvalidInput

log = logging.getLogger("service")

CLIENT_GONE = 499  # nginx's and Envoy's status for a client that left before its answer: its own, not a 5xx


class ApiError(Exception):
    """An error with its HTTP status, machine-readable code and a message for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.details = headers or {}, details or []


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class BodyTimeout(Exception):
    """The request body did not arrive within SENTIMENT_BODY_TIMEOUT_S."""


def check_json_media_type(headers: Any) -> None:
    """415 unless the body is declared JSON (application/json or a +json type; JSON when not declared)."""
    media_type = headers.get("content-type", "application/json").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, not {media_type!r}")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


ErrorShape = Callable[[ApiError, str | None], Response]


def ours(error: ApiError, request_id: str | None) -> Response:
    """This service's error body: code, message, details (the fields at fault) and the request id."""
    body = {"code": error.code, "message": error.message, "details": error.details, "request_id": request_id}
    return json_response({"error": body}, error.status, error.headers)


def open_inference(error: ApiError, request_id: str | None) -> Response:
    """The Open Inference Protocol's error body: ``{"error": "message"}``."""
    return json_response({"error": error.message}, error.status, error.headers)


def invalid(exc: InvalidInput, status: int = 422) -> ApiError:
    details = [{"field": e.field, "message": e.message} for e in exc.every()]
    return ApiError(status, "validation_error", str(exc), details=details)


def body_too_large(limit: int, setting: str = "SENTIMENT_MAX_BODY_BYTES") -> ApiError:
    return ApiError(413, "body_too_large", f"request body is larger than {setting} = {limit:,} bytes")


def field_name(loc: Iterable[Any]) -> str | None:
    """``("texts", 3)`` -> ``"texts[3]"``; FastAPI's leading ``"body"`` is dropped."""
    name = ""
    for part in loc:
        if part == "body":
            continue
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def validation_error(errors: Iterable[dict[str, Any]]) -> ApiError:
    """A 422 naming every invalid field and the rule it broke (never echoing the input)."""
    details = [
        {"field": field_name(e.get("loc", ())), "message": str(e.get("msg", "invalid")).removeprefix("Value error, ")}
        for e in errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
    return ApiError(422, "validation_error", summary or "invalid request", details=details)


def outcome(exc: BaseException, settings: Settings, metrics: Metrics, invalid_status: int = 422) -> ApiError | None:
    """The ApiError for what a request raised (None: a bug, answered 500 by the caller); refusals counted by
    reason."""
    retry = {"Retry-After": "1"}
    reason: str | None = None
    error: ApiError | None = None
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidInput):
        return invalid(exc, invalid_status)
    if isinstance(exc, RequestValidationError):
        return validation_error(exc.errors())
    if isinstance(exc, ClientGone | ClientDisconnect):
        reason, error = "client_gone", ApiError(CLIENT_GONE, "client_gone", "the client closed the connection")
    elif isinstance(exc, BodyTimeout):
        message = f"the request body did not arrive within SENTIMENT_BODY_TIMEOUT_S = {settings.body_timeout_s} s"
        reason, error = "body_timeout", ApiError(408, "body_timeout", message, headers={"Connection": "close"})
    elif isinstance(exc, QueueFullError):
        wait = max(1, math.ceil(exc.retry_after))
        message = f"{exc.reason}; retry in {wait} s"
        reason, error = "queue_full", ApiError(429, "overloaded", message, headers={"Retry-After": str(wait)})
    elif isinstance(exc, NotAcceptingError) or (isinstance(exc, NotReadyError) and exc.state == "draining"):
        reason, error = "draining", ApiError(503, "not_ready", "the service is shutting down", headers=retry)
    elif isinstance(exc, NotReadyError):
        reason, error = "not_ready", ApiError(503, "not_ready", "the model is warming up", headers=retry)
    elif isinstance(exc, InferenceError):
        message = "the model failed on the batch holding this request (see the server log); retry"
        reason, error = "inference_failed", ApiError(503, "inference_failed", message, headers=retry)
    elif isinstance(exc, TimeoutError):
        message = f"no result within SENTIMENT_REQUEST_TIMEOUT_S = {settings.request_timeout_s} s"
        reason, error = "timeout", ApiError(503, "timeout", message, headers=retry)
    elif isinstance(exc, StarletteHTTPException):
        error = _http_error(exc, settings)
    if reason is not None:
        metrics.rejected.labels(reason).inc()
    return error


def _http_error(exc: StarletteHTTPException, settings: Settings) -> ApiError:
    if exc.status_code == 413:
        detail = str(exc.detail)
        return ApiError(413, "body_too_large", detail) if "bytes" in detail else body_too_large(settings.max_body_bytes)
    messages = {
        400: ("bad_request", f"could not read the request ({exc.detail})"),
        404: ("not_found", "no such route"),
        405: ("method_not_allowed", "method not allowed on this route"),
    }
    code, message = messages.get(exc.status_code, ("http_error", str(exc.detail)))
    return ApiError(exc.status_code, code, message, headers=dict(exc.headers or {}))


SHAPE_STATE = "error_shape"  # request.state key: the protocol's ErrorShape (set by its router), else ``ours``


def respond(request: Request, exc: BaseException, settings: Settings, metrics: Metrics) -> Response:
    """The answer for anything a request raised, in its protocol's error body; a bug is a logged 500."""
    request_id = getattr(request.state, "request_id", None)
    shape: ErrorShape = getattr(request.state, SHAPE_STATE, ours)
    error = outcome(exc, settings, metrics, 400 if shape is open_inference else 422)
    if error is None:
        log.exception("unhandled error", extra={"request_id": request_id}, exc_info=exc)
        error = ApiError(500, "internal_error", "internal error; see the server log")
    return shape(error, request_id)


def install_error_handlers(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        return respond(request, exc, settings, metrics)

    # The engine's own exceptions are listed too: a handler registered for Exception alone runs in Starlette's
    # outermost error middleware, which answers and then re-raises, and the server drops the connection.
    known = (ApiError, RequestValidationError, StarletteHTTPException, QueueFullError, NotAcceptingError)
    for exc_type in (*known, NotReadyError, InferenceError, InvalidInput, ClientDisconnect, Exception):
        app.add_exception_handler(exc_type, handler)
