"""Every failure a client can see, and how it leaves: ``{"error": {"code", "message", "details", "request_id"}}``.

The one place that maps failures to statuses. :class:`ApiError` carries a status, a code and a message;
the helpers below turn body, JSON and validation failures into 4xx errors that name the field and the
limit, ``engine_error`` turns the engine's refusals into 429/503, and ``error_for`` maps whatever a request
raised onto a response, for the FastAPI routes and the fast path alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.batcher import InferenceError, NotAcceptingError, QueueFullError
from service.config import Settings
from service.metrics import Metrics

log = logging.getLogger("service")

Model = TypeVar("Model", bound=BaseModel)
JSON_MEDIA_TYPES = ("application/json",)


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


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


OIP_PREFIX = "/v2"  # the Open Inference Protocol's routes answer errors in its own shape


def speaks_oip(path: str) -> bool:
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def error_response(request_id: str | None, error: ApiError, path: str = "") -> Response:
    """The error in the protocol of ``path``: ``{"error": {"code", "message", "details", "request_id"}}``,
    or the Open Inference Protocol's ``{"error": "message"}`` under /v2."""
    body: dict[str, Any]
    if speaks_oip(path):
        body = {"error": error.message}
    else:
        body = {
            "error": {"code": error.code, "message": error.message, "details": error.details, "request_id": request_id}
        }
    return json_response(body, error.status, error.headers)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body is larger than SENTIMENT_MAX_BODY_BYTES = {limit:,} bytes")


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
    details: list[dict[str, Any]] = []
    for err in errors:
        name = field_name(err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            name, message = None, f"body is not valid JSON ({err.get('ctx', {}).get('error', message)})"
        details.append({"field": name, "message": message.removeprefix("Value error, ")})
    summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
    return ApiError(422, "validation_error", summary or "invalid request", details=details)


def parse_json_body(body: bytes, content_type: str | None, model: type[Model]) -> Model:
    """``body`` validated as ``model``, or the ApiError that says what is wrong with it.

    orjson parses (it refuses invalid UTF-8, lone surrogates and nesting deeper than 1,024 levels), then
    pydantic validates the Python object against the request model and its limits.
    """
    media_type = (content_type or "application/json").partition(";")[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be application/json, not {media_type or 'empty'!r}"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise validation_error([{"type": "json_invalid", "ctx": {"error": _json_problem(body, exc)}}]) from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "validation_error",
            f"the body must be a JSON object, not {_json_type(data)}",
            details=[{"field": None, "message": "must be a JSON object"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error([dict(e) for e in exc.errors(include_url=False, include_input=False)]) from None


def _json_problem(body: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte 0x{body[bad.start]:02x} at position {bad.start}"
    return str(exc)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def engine_error(exc: Exception, settings: Settings, metrics: Metrics) -> ApiError | None:
    """The answer for a refusal or failure of the engine (None: not one of the engine's), counted by reason."""
    retry = {"Retry-After": "1"}
    if isinstance(exc, QueueFullError):
        wait = max(1, math.ceil(exc.retry_after))
        message = f"{exc.reason}; retry in {wait} s"
        reason, error = "queue_full", ApiError(429, "overloaded", message, headers={"Retry-After": str(wait)})
    elif isinstance(exc, NotAcceptingError):
        reason, error = "draining", ApiError(503, "not_ready", "the service is shutting down", headers=retry)
    elif isinstance(exc, InferenceError):
        reason, error = (
            "inference_failed",
            ApiError(
                503,
                "inference_failed",
                "the model failed on the batch holding this request (see the server log); retry",
                headers=retry,
            ),
        )
    elif isinstance(exc, TimeoutError):
        reason, error = (
            "timeout",
            ApiError(
                503,
                "timeout",
                f"no result within SENTIMENT_REQUEST_TIMEOUT_S = {settings.request_timeout_s} s",
                headers=retry,
            ),
        )
    else:
        return None
    metrics.rejected.labels(reason).inc()
    return error


def not_ready(metrics: Metrics) -> ApiError:
    metrics.rejected.labels("not_ready").inc()
    return ApiError(503, "not_ready", "the model is warming up", headers={"Retry-After": "1"})


def error_for(request: Request, exc: Exception, settings: Settings, metrics: Metrics) -> Response:
    """The response for any exception a request raised."""
    request_id = getattr(request.state, "request_id", None)
    path = request.url.path
    if isinstance(exc, ApiError):
        return error_response(request_id, exc, path)
    if isinstance(exc, RequestValidationError):
        return error_response(request_id, validation_error(exc.errors()), path)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 413:
            return error_response(request_id, body_too_large(settings.max_body_bytes), path)
        messages = {
            400: ("bad_request", f"could not read the request body ({exc.detail})"),
            404: ("not_found", f"no route {request.url.path}"),
            405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}"),
        }
        code, message = messages.get(exc.status_code, ("http_error", str(exc.detail)))
        return error_response(
            request_id, ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})), path
        )
    mapped = engine_error(exc, settings, metrics)
    if mapped is not None:
        return error_response(request_id, mapped, path)
    log.exception("unhandled error", extra={"request_id": request_id}, exc_info=exc)
    return error_response(request_id, ApiError(500, "internal_error", "internal error; see the server log"), path)


def install_error_handlers(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        return error_for(request, exc, settings, metrics)

    # The engine's own exceptions are listed too: a handler registered for Exception alone runs in Starlette's
    # outermost error middleware, which answers and then re-raises, and the server drops the connection.
    engine_errors = (QueueFullError, NotAcceptingError, InferenceError)
    for exc_type in (ApiError, RequestValidationError, StarletteHTTPException, *engine_errors, Exception):
        app.add_exception_handler(exc_type, handler)
