"""The HTTP routes, as module-level handlers over the engine (``register`` adds them to an app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from service.batcher import QueueFullError
from service.deps import Authorized, Service, ServiceDep, check_api_key, get_service
from service.engine import Engine
from service.errors import ApiError, engine_error, json_response, parse_json_body
from service.schemas import (
    ErrorResponse,
    ExplainResponse,
    Health,
    ModelInfo,
    PredictRequestBase,
    PredictResponse,
    explain_response,
    model_info,
    predict_response,
)

R = TypeVar("R")
log = logging.getLogger("service")

# The error answers of the routes that score texts (/predict, /explain), for their OpenAPI operations.
SCORING_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "body over SENTIMENT_MAX_BODY_BYTES"},
    415: {"model": ErrorResponse, "description": "the body is not JSON"},
    429: {"model": ErrorResponse, "description": "queue full; retry after Retry-After seconds"},
    503: {"model": ErrorResponse, "description": "not ready, draining, timed out, or the model run failed"},
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"}
}
# The web page at /: one file, inline CSS and JS; the policy forbids it to load or call anything elsewhere.
INDEX_HTML = (Path(__file__).resolve().parent / "static" / "index.html").read_bytes()
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CLIENT_GONE = 499


async def request_texts(request: Request, model: type[PredictRequestBase]) -> list[str]:
    """The texts of the request's JSON body. The scoring routes parse their own bodies (orjson, then one
    pydantic pass): the fast path has no FastAPI body handling."""
    body = parse_json_body(await request.body(), request.headers.get("content-type"), model)
    texts = body.all_texts()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("texts", extra={"request_id": request.state.request_id, "texts": texts})
    return texts


DRAIN_TIMEOUT_S = 1.0  # how long an early refusal waits for the rest of a body it will not parse
# uvicorn reads up to this much of a body on its own; beyond it, unread bytes would reset the connection
SERVER_READS_AHEAD = 65536
# A 429 is answered after at most this pause (never longer than the expected wait): a client that ignores
# Retry-After and asks again at once would otherwise spend the CPU a refusal saves (measured: README).
REFUSAL_PAUSE_S = 0.5


async def refused(exc: QueueFullError, engine: Engine) -> ApiError:
    """The 429 for a refusal, after the pause."""
    await asyncio.sleep(min(exc.retry_after, REFUSAL_PAUSE_S))
    return engine_error(exc, engine.settings, engine.metrics) or ApiError(429, "overloaded", exc.reason)


@contextlib.asynccontextmanager
async def admitted(request: Request, engine: Engine, lane: str = "predict") -> AsyncIterator[None]:
    """Admission before the body is parsed (engine.permit). A refused request's body is read and thrown
    away (never parsed) before the 429 goes out, so the client reads a clean answer instead of a reset
    connection; a body that does not arrive within DRAIN_TIMEOUT_S is not waited for."""
    try:
        permit = engine.permit(content_length(request), lane)
        permit.__enter__()
    except QueueFullError as exc:
        if (content_length(request) or 0) > SERVER_READS_AHEAD:
            with contextlib.suppress(TimeoutError, ClientDisconnect, HTTPException):
                await asyncio.wait_for(_discard_body(request), DRAIN_TIMEOUT_S)
        raise await refused(exc, engine) from None
    try:
        yield
    finally:
        permit.__exit__(None, None, None)


async def _discard_body(request: Request) -> None:
    async for _ in request.stream():
        pass


def content_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def predict(request: Request) -> Response:
    """POST /predict: served by the fast path (service.fastpath), documented by FastAPI. Admission comes
    first: a full server answers 429 before the body is read."""
    service = get_service(request)
    check_api_key(request, service)
    engine = service.ready_engine()
    async with admitted(request, engine):
        texts = await request_texts(request, service.predict_request)
        scored = await finish(service, engine.predict(texts), request)
    if scored is None:  # the client went away; nobody reads this
        return Response(status_code=CLIENT_GONE)
    return json_response(predict_response(*scored))


async def explain(request: Request, service: ServiceDep) -> Response:
    """POST /explain, on its own lane: an explanation flood slows explanations, never predictions."""
    check_api_key(request, service)
    engine = service.ready_engine()
    async with admitted(request, engine, lane="explain"):
        texts = await request_texts(request, service.explain_request)
        explained = await finish(service, engine.explain(texts), request)
    if explained is None:
        return Response(status_code=CLIENT_GONE)
    return json_response(explain_response(*explained))


async def index() -> Response:
    return Response(INDEX_HTML, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def healthz() -> Response:
    return json_response({"status": "ok"})


async def readyz(service: ServiceDep) -> Response:
    if service.ready:
        return json_response({"status": "ready"})
    status = "draining" if service.draining else "starting"
    return json_response({"status": status}, 503, {"Retry-After": "1"})


async def model(service: ServiceDep) -> Response:
    return json_response(model_info(service.loaded_engine().predictor, service.settings))


async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def register(app: FastAPI, settings_explain_texts: int, settings_explain_tokens: int) -> None:
    """Add every route to ``app`` with its OpenAPI description."""
    app.add_api_route(
        "/predict",
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        summary="Score the sentiment of one or more texts",
        openapi_extra=json_request_body("PredictRequest"),
        responses=SCORING_ERRORS,
    )
    app.add_api_route(
        "/explain",
        explain,
        methods=["POST"],
        response_model=ExplainResponse,
        summary="Explain predictions: how much each word pushed each label (occlusion)",
        description="Scores each text once as is and once per word with that word replaced by the unknown "
        "token, in one batch, and reports each word's change in each label's log-odds. Costs about n + 1 "
        f"predictions for a text of n words; at most {settings_explain_texts} texts per request and the last "
        f"{settings_explain_tokens} words of each text are explained.",
        openapi_extra=json_request_body("ExplainRequest"),
        responses=SCORING_ERRORS,
    )
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/healthz", healthz, methods=["GET"], response_model=Health, summary="Liveness: 200 while the process runs"
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Health,
        summary="Readiness: 200 once the model is loaded and warmed up",
        responses={503: {"model": Health, "description": "loading, warming up or shutting down"}},
    )
    app.add_api_route(
        "/model",
        model,
        methods=["GET"],
        response_model=ModelInfo,
        dependencies=[Authorized],
        summary="The model being served",
        responses=UNAUTHORIZED,
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )


def json_request_body(schema_name: str) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that parses its JSON body itself."""
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def openapi_with_request_schemas(app: FastAPI, models: list[type[BaseModel]]) -> Any:
    """FastAPI's schema, plus the request models that routes parse themselves (see json_request_body)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for model in models:
                schema["components"]["schemas"][model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
        return app.openapi_schema or {}

    return openapi


async def finish(service: Service, work: Coroutine[Any, Any, R], request: Request) -> R | None:
    """Await queued model work, bounded in time; None if the client disconnected first (the work is then
    withdrawn from the queue if it had not started). Engine refusals leave as their ApiError."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {job, gone}, timeout=service.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if job in done:
        try:
            return job.result()
        except QueueFullError as exc:
            raise await refused(exc, service.loaded_engine()) from None
        except Exception as exc:
            mapped = engine_error(exc, service.settings, service.metrics)
            if mapped is None:
                raise
            raise mapped from None
    job.cancel()  # withdraws the texts from the queue if they are still waiting
    if gone in done:
        service.metrics.rejected.labels("client_gone").inc()
        return None
    raise engine_error(TimeoutError(), service.settings, service.metrics) or RuntimeError("unreachable")


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the end)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
