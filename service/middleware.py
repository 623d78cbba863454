"""Request id, body-size limit, access log and request metrics, in one pure ASGI layer (no per-request task
or body copy). It wraps everything, the fast path included.

The body limit is checked on Content-Length before anything is read, and again while the body streams in
(chunked uploads), so an oversized body is never held in memory whole.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import body_too_large, ours
from service.lifecycle import ROUTE_LABEL
from service.metrics import Metrics

access_log = logging.getLogger("service.access")
REQUEST_ID_HEADER = b"x-request-id"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, raw_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        received = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, raw_id)]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413)  # FastAPI passes its HTTP errors from body reading through
            return message

        try:
            if _content_length(scope) > self.max_body:
                await ours(body_too_large(self.max_body), request_id)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        finally:
            route = state.get(ROUTE_LABEL) or getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server rejects a malformed header before we get here
    return 0


def _request_id(scope: Scope) -> tuple[str, bytes]:
    """The client's X-Request-ID (its bytes echoed as sent, read as UTF-8 for the log) when it is 1 to 128
    visible bytes, else a fresh one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and 0 < len(value) <= 128 and value.strip() and not _CONTROL.search(value):
            return value.decode("utf-8", "replace"), value
    fresh = uuid.uuid4().hex
    return fresh, fresh.encode()
