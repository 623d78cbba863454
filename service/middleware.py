"""Request id, body-size limit, access log and request metrics, in one pure ASGI layer (no per-request task
or body copy). It wraps everything, the fast path included.

The body limit is checked on Content-Length before anything is read (413, and the connection closes: an
``Expect: 100-continue`` client that sends its body anyway must not have it read as its next request), and
again while the body streams in (chunked uploads), so an oversized body is never held in memory whole. A
transfer coding other than chunked is 501. HEAD is answered wherever GET is (the server sends the headers
only). Metrics label each request with its route's template, refusals before routing included.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from fastapi import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, body_too_large, ours
from service.lifecycle import ROUTE_LABEL
from service.metrics import Metrics

access_log = logging.getLogger("service.access")
REQUEST_ID_HEADER = b"x-request-id"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        templates: Callable[[], list[str]],
        uploads: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.uploads = uploads or {}  # POST path -> (its body limit, the setting that sets it): file uploads
        self._templates = templates  # every route template the app serves, for the metrics' route label
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        if method == "HEAD":  # routed as GET; the server itself leaves the body out of a HEAD answer
            scope = {**scope, "method": "GET"}
        request_id, raw_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        received = 0
        limit, setting = self._limit(scope)

        close = False  # the body will not be read: the connection cannot carry another request

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(REQUEST_ID_HEADER, raw_id), *([(b"connection", b"close")] if close else [])]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, body_too_large(limit, setting).message)  # FastAPI passes these through
            return message

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                close = True
                await ours(refusal, request_id)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        finally:
            route = state.get(ROUTE_LABEL) or self._template(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )

    def _refusal(self, scope: Scope) -> ApiError | None:
        """What is refused before the app sees the request: a body over the limit by its Content-Length, a
        transfer coding other than chunked."""
        for name, value in scope["headers"]:
            if name == b"transfer-encoding" and any(c.strip() != b"chunked" for c in value.lower().split(b",")):
                coding = value.decode("latin-1")
                return ApiError(501, "not_implemented", f"Transfer-Encoding {coding!r} is not supported; use chunked")
        limit, setting = self._limit(scope)
        if _content_length(scope) > limit:
            return body_too_large(limit, setting)
        return None

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if scope["method"] == "POST" and scope["path"] in self.uploads:
            return self.uploads[scope["path"]]
        return self.max_body, "SENTIMENT_MAX_BODY_BYTES"

    def _template(self, scope: Scope) -> str:
        """The route template the path matches (a bounded label, whatever the path), else "unmatched". The
        templates are read once, at the first request (every route is registered by then)."""
        if self._patterns is None:
            self._patterns = [(compile_path(t)[0], t) for t in sorted(set(self._templates()), key=len, reverse=True)]
        return next((t for pattern, t in self._patterns if pattern.match(scope["path"])), "unmatched")


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
