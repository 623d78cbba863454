"""The one life of a scoring request, whatever its protocol:

    auth -> ready -> admit by cost (an estimate, holding nothing) -> read the body (bounded in size and
    time) -> parse and validate the texts -> take an in-flight slot -> submit -> await the answer, or notice
    the client has gone -> answer

``/predict``, ``/explain`` and the Open Inference Protocol's infer routes are thin adapters over it
(``service.adapters``): each gives a ``Scoring`` (which lane, how to read its body into texts, how to
write the answer, which error body it speaks) and the lifecycle does the rest. ``ScoringRoutes`` serves
them in front of FastAPI's router, as plain ASGI handlers (FastAPI's routing and dependency solving cost
the event loop a third of its time per request); FastAPI still documents them. Every failure leaves
through ``service.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth import check_api_key
from service.budget import QueueFullError
from service.config import Settings
from service.engine import Engine
from service.errors import ApiError, BodyTimeout, ClientGone, ErrorShape, body_too_large, outcome
from service.metrics import Metrics

log = logging.getLogger("service")
ROUTE_LABEL = "route_label"  # scope["state"] key: the route template, for metrics
# A 429 is answered after at most this pause (never longer than the expected wait): a client that ignores
# Retry-After and asks again at once would otherwise spend the CPU a refusal saves (docs/operations.md).
REFUSAL_PAUSE_S = 0.5
DISCARD_TIMEOUT_S = 1.0  # how long an early refusal waits for the rest of a body it will not parse
SERVER_READS_AHEAD = 65536  # uvicorn reads this much of a body on its own; beyond it, unread bytes reset
PARSE_OFF_LOOP_BYTES = 256 * 1024  # a larger body is parsed on a worker thread, not on the event loop


@dataclass(frozen=True)
class Scoring:
    """What one protocol's scoring route gives the lifecycle."""

    lane: str  # "predict", "analyze" or "explain": the engine's queue it uses
    shape: ErrorShape  # the protocol's error body
    invalid_status: int  # the status of invalid input in this protocol (422 ours, 400 Open Inference)
    parse: Callable[[bytes, Headers, dict[str, str]], tuple[list[str], Any]]  # body -> texts + what answer needs
    answer: Callable[[Any, Any], Response]  # (the engine's result, what parse returned beside the texts)
    check: Callable[[Engine, dict[str, str]], None] | None = None  # path parameters (e.g. the model's name)
    languages: bool = True  # each text's answer says its language (an /analyze sentence's does not)


async def serve(request: Request, scoring: Scoring, engine: Engine) -> Response:
    """The scoring request's answer; every failure is mapped by service.errors into the protocol's body.
    Once the engine drains (SIGTERM), every answer, scored or refused, closes its connection: the client's
    next request goes to a process that stays."""
    response = await _answer(request, scoring, engine)
    if engine.draining:
        response.headers["connection"] = "close"
    return response


async def _answer(request: Request, scoring: Scoring, engine: Engine) -> Response:
    settings = engine.settings
    try:
        check_api_key(request.headers, settings)
        admission = engine.require_ready()
        if scoring.check is not None:
            scoring.check(engine, request.path_params)
        try:
            admission.check_estimate(content_length(request.headers), scoring.lane)
        except QueueFullError:
            await _discard_large_body(request)
            raise
        body = await read_body(request, settings)
        if len(body) > PARSE_OFF_LOOP_BYTES:
            texts, context = await asyncio.to_thread(scoring.parse, body, request.headers, request.path_params)
        else:
            texts, context = scoring.parse(body, request.headers, request.path_params)
        with admission.slot(scoring.lane):
            work: Awaitable[Any]
            if scoring.lane == "explain":
                work = engine.explain(texts)
            else:
                work = engine.predict(texts, scoring.languages, scoring.lane)
            result = await until_answered(work, request, engine.deadline_s(scoring.lane, texts))
        return scoring.answer(result, context)
    except Exception as exc:
        return await failure(request, exc, scoring, engine.settings, engine.metrics)


async def failure(request: Request, exc: Exception, scoring: Scoring, settings: Settings, metrics: Metrics) -> Response:
    request_id = getattr(request.state, "request_id", None)
    error = outcome(exc, settings, metrics, scoring.invalid_status)
    if error is None:
        log.exception("unhandled error", extra={"request_id": request_id}, exc_info=exc)
        error = ApiError(500, "internal_error", "internal error; see the server log")
    if isinstance(exc, QueueFullError):
        await asyncio.sleep(min(exc.retry_after, REFUSAL_PAUSE_S))
    return scoring.shape(error, request_id)


def content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body, within SENTIMENT_BODY_TIMEOUT_S (BodyTimeout), decoded from gzip when the client
    says so (at most SENTIMENT_MAX_BODY_BYTES once decoded: a zip bomb is a 413 like any large body)."""
    chunks: list[bytes] = []

    async def collect() -> None:
        async for chunk in request.stream():
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), settings.body_timeout_s)
    except TimeoutError:
        raise BodyTimeout from None
    except ClientDisconnect:
        raise ClientGone from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")
    return gunzip(body, settings.max_body_bytes)


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body as RFC 1952 has it: one member or several, one after the other, each complete with its
    trailer; nothing after the last. At most ``limit`` bytes once decoded (a zip bomb is a 413 like any large
    body)."""
    decoded, rest = b"", body
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            decoded += inflater.decompress(rest, limit + 1 - len(decoded))
        except zlib.error as exc:
            problem = "has bytes after its last gzip member" if decoded else f"is not valid gzip ({exc})"
            raise ApiError(400, "bad_request", f"the body {problem}") from None
        if len(decoded) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "body_too_large", body_too_large(limit).message + " once decoded")
        if not inflater.eof:
            raise ApiError(400, "bad_request", "the body is not valid gzip (it ends before the member's trailer)")
        rest = inflater.unused_data
    return decoded


async def _discard_large_body(request: Request) -> None:
    """Before an early 429: read and drop the rest of a large body, so that the client reads the answer
    instead of a reset connection (a body that does not come within DISCARD_TIMEOUT_S is not waited for)."""
    if (content_length(request.headers) or 0) > SERVER_READS_AHEAD:
        with contextlib.suppress(Exception):  # a timeout, a client that left, a body over the limit
            await asyncio.wait_for(_drain(request), DISCARD_TIMEOUT_S)


async def _drain(request: Request) -> None:
    async for _ in request.stream():
        pass


async def until_answered(work: Awaitable[Any], request: Request, timeout: float) -> Any:
    """The engine's answer; ClientGone if the client disconnects first (the work is then withdrawn from the
    queue if it had not started), TimeoutError past ``timeout``."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job in done:
        return job.result()
    job.cancel()  # withdraws the texts from the queue if they are still waiting
    if gone in done:
        raise ClientGone
    raise TimeoutError


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ScoringRoutes:
    """Serves the scoring routes in front of the app behind it (FastAPI); everything else passes through."""

    def __init__(self, app: ASGIApp, engine: Engine, routes: dict[tuple[str, str], Scoring]) -> None:
        self.app, self.engine = app, engine
        self.routes: list[tuple[str, str, re.Pattern[str], Scoring]] = [
            (method, path, compile_path(path)[0], scoring) for (method, path), scoring in routes.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for method, path, pattern, scoring in self.routes:
                match = pattern.match(scope["path"])
                if match and scope["method"] == method:
                    scope["state"][ROUTE_LABEL] = path
                    scope["path_params"] = match.groupdict()
                    response = await serve(Request(scope, receive), scoring, self.engine)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
