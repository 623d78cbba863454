"""The FastAPI app: routes, lifespan (model, batcher, warm-up) and the request middleware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Batcher, BatchStats, InferenceError, NotAcceptingError, QueueFullError
from service.config import Settings
from service.errors import ApiError, body_too_large, error_response, json_response, parse_json_body, validation_error
from service.metrics import Metrics
from service.predictor import CUDA_PROVIDER, Explanation, Prediction, Predictor, available_cpus
from service.schemas import (
    ErrorResponse,
    ExplainResponse,
    Health,
    ModelInfo,
    PredictResponse,
    make_predict_request,
)

R = TypeVar("R")
Body = TypeVar("Body", bound=BaseModel)
# The error answers of the routes that score texts (/predict, /explain), for their OpenAPI operations.
SCORING_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "body over SENTIMENT_MAX_BODY_BYTES"},
    415: {"model": ErrorResponse, "description": "the body is not JSON"},
    429: {"model": ErrorResponse, "description": "queue full; retry after Retry-After seconds"},
    503: {"model": ErrorResponse, "description": "not ready, draining, timed out, or the model run failed"},
}
log = logging.getLogger("service")
access_log = logging.getLogger("service.access")
REQUEST_ID_HEADER = b"x-request-id"
# The web page at /: one file, inline CSS and JS; the policy forbids it to load or call anything elsewhere.
INDEX_HTML = (Path(__file__).resolve().parent / "static" / "index.html").read_bytes()
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                           "style-src 'self' 'unsafe-inline'; connect-src 'self'; "
                                           "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    predictor: Predictor | None = None
    batcher: Batcher | None = None
    warmed_up: bool = False
    draining: bool = False
    warmup_task: asyncio.Task[None] | None = None
    # (method, path) -> a plain ASGI app that serves it without FastAPI's routing (see create_app)
    direct_routes: dict[tuple[str, str], ASGIApp] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.warmed_up and not self.draining

    def begin_draining(self) -> None:
        """Readiness goes 503 at once; requests already accepted still get their answers."""
        self.draining = True


# --------------------------------------------------------------------------------------------------
# Middleware: request id, access log, request metrics. Pure ASGI (no per-request task or body copy).


class RequestContextMiddleware:
    """Request id, body size limit, access log and request metrics, in one pure ASGI layer; it hands the
    routes in ``state.direct_routes`` straight to their handlers.

    The body limit is checked on Content-Length before anything is read, and again while the body streams
    in (chunked uploads), so an oversized body is never held in memory whole.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state
        self.max_body = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        direct = self.state.direct_routes.get((scope["method"], scope["path"]))
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        received = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
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
                await error_response(request_id, body_too_large(self.max_body))(scope, receive, send_with_id)
            else:
                await (direct or self.app)(scope, receive_limited, send_with_id)
        finally:
            route_label = scope["path"] if direct else getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            metrics = self.state.metrics
            metrics.requests.labels(route_label, scope["method"], str(status)).inc()
            metrics.request_seconds.labels(route_label).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("request", extra={"request_id": request_id, "method": scope["method"],
                                                  "path": scope["path"], "status": status,
                                                  "duration_ms": round(elapsed * 1000, 2)})


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server rejects a malformed header before we get here
    return 0


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")[:128]
            if candidate.isprintable() and candidate.strip():
                return candidate
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------------------
# Errors: every failure leaves as {"error": {"code", "message", "details", "request_id"}}.


def error_for(request: Request, exc: Exception, max_body_bytes: int) -> Response:
    """The response for any exception a request raised (the only place that maps failures to statuses)."""
    request_id = getattr(request.state, "request_id", None)
    if isinstance(exc, ApiError):
        return error_response(request_id, exc)
    if isinstance(exc, RequestValidationError):
        return error_response(request_id, validation_error(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 413:
            return error_response(request_id, body_too_large(max_body_bytes))
        messages = {
            400: ("bad_request", f"could not read the request body ({exc.detail})"),
            404: ("not_found", f"no route {request.url.path}"),
            405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}"),
        }
        code, message = messages.get(exc.status_code, ("http_error", str(exc.detail)))
        return error_response(request_id, ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})))
    log.exception("unhandled error", extra={"request_id": request_id}, exc_info=exc)
    return error_response(request_id, ApiError(500, "internal_error", "internal error; see the server log"))


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        return error_for(request, exc, settings.max_body_bytes)

    for exc_type in (ApiError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handler)


# --------------------------------------------------------------------------------------------------
# App


# Batches run in parallel on a GPU host: two keep the GPU fed while the other tokenizes (README, Performance).
GPU_INFERENCE_WORKERS = 2


def inference_workers(settings: Settings, provider: str) -> int:
    """Batches run in parallel: as set, else one per available CPU (on CPU) or GPU_INFERENCE_WORKERS (CUDA)."""
    if settings.inference_workers:
        return settings.inference_workers
    return GPU_INFERENCE_WORKERS if provider == CUDA_PROVIDER else available_cpus()


def load_predictor(settings: Settings) -> Predictor:
    """The model of ``settings``, with onnxruntime threads sized so that all inference workers together use
    the CPUs this process may use (not the host's)."""
    workers = settings.inference_workers or available_cpus()
    threads = settings.intra_op_threads or max(1, available_cpus() // workers)
    return Predictor.load(settings.model_dir, provider=settings.provider, intra_op_threads=threads,
                          inter_op_threads=settings.inter_op_threads, spin=settings.ort_spin)


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; ``predictor`` is an already loaded model (else the lifespan loads settings.model_dir)."""
    settings = settings or Settings()
    state = State(settings)
    preloaded = predictor
    PredictRequest = make_predict_request(settings.max_client_batch, settings.max_text_chars)
    ExplainRequest = make_predict_request(settings.max_explain_texts, settings.max_text_chars, "ExplainRequest")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = state.predictor = preloaded or load_predictor(settings)

        def predict(texts: list[str]) -> list[Prediction]:
            return predictor.predict(texts, settings.max_batch_tokens, settings.max_batch_size)

        state.batcher = Batcher(predict, settings.max_batch_size, settings.max_wait_ms, settings.max_queue,
                                BatchStats(on_batch=state.metrics.observe_batch,
                                           on_depth=state.metrics.queue_depth.set),
                                workers=inference_workers(settings, predictor.provider))
        state.batcher.start()
        state.warmup_task = asyncio.create_task(_warm_up(state), name="warm-up")
        if settings.processes > 1:
            # One of several processes on a shared socket: accept nothing until warm, or a client could be
            # sent to a process that answers 503 while its siblings are ready.
            await asyncio.shield(state.warmup_task)
        try:
            yield
        finally:
            state.draining = True
            state.warmup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.warmup_task
            await state.batcher.drain()
            log.info("drained; shutting down")

    app = FastAPIOffline(
        title="Sentiment service",
        version="1.0.0",
        description="Sentiment scores for English texts from a bidirectional LSTM served by ONNX Runtime. "
                    "Send one text or a batch to `POST /predict`.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse, "description": "invalid input (names the field and limit)"}},
    )
    app.state.service = state
    app.openapi = _openapi_with_request_schemas(app, [PredictRequest, ExplainRequest])  # type: ignore[method-assign]
    app.add_middleware(RequestContextMiddleware, state=state)
    install_error_handlers(app, settings)
    require_api_key = _api_key_check(settings)
    auth = Depends(require_api_key)

    async def authorized_body(request: Request, model: type[Body]) -> Body:
        """The request's JSON body as ``model``, once its API key has been checked (the scoring routes parse
        their own bodies: see predict_directly)."""
        await require_api_key(request)
        return parse_json_body(await request.body(), request.headers.get("content-type"), model)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        summary="Score the sentiment of one or more texts",
        openapi_extra=json_request_body(PredictRequest),
        responses=SCORING_ERRORS,
    )
    async def predict(request: Request) -> Response:
        body = await authorized_body(request, PredictRequest)
        texts = body.all_texts()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("texts", extra={"request_id": request.state.request_id, "texts": texts})
        predictions = await _finish(state, _batcher(state).submit(texts), request)
        if predictions is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        predictor = state.predictor
        assert predictor is not None
        return json_response({
            "model": {"name": predictor.name, "version": predictor.version},
            "predictions": [_prediction_json(p) for p in predictions],
        })

    async def predict_directly(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /predict served by the handler above without FastAPI's routing, dependency solving and
        request wrapping, which cost the event loop a third of its time per request (README, Performance).
        FastAPI still documents the route; the handler parses its own body for the same reason."""
        request = Request(scope, receive)
        try:
            response = await predict(request)
        except Exception as exc:
            response = error_for(request, exc, settings.max_body_bytes)
        await response(scope, receive, send)

    state.direct_routes[("POST", "/predict")] = predict_directly

    @app.post(
        "/explain",
        response_model=ExplainResponse,
        summary="Explain predictions: how much each word pushed each label (occlusion)",
        description=f"Scores each text once as is and once per word with that word replaced by the unknown "
                    f"token, in one batch, and reports each word's change in each label's log-odds. Costs about "
                    f"n + 1 predictions for a text of n tokens; at most {settings.max_explain_texts} texts per "
                    f"request and the last {settings.max_explain_tokens} tokens of each text are explained.",
        openapi_extra=json_request_body(ExplainRequest),
        responses=SCORING_ERRORS,
    )
    async def explain(request: Request) -> Response:
        body = await authorized_body(request, ExplainRequest)
        texts = body.all_texts()
        predictor = state.predictor
        assert predictor is not None

        def run() -> list[Explanation]:
            return [predictor.explain(t, settings.max_explain_tokens, settings.max_batch_tokens) for t in texts]

        explanations = await _finish(state, _batcher(state).call(run, len(texts)), request)
        if explanations is None:
            return Response(status_code=499)
        return json_response({
            "model": {"name": predictor.name, "version": predictor.version},
            "method": "occlusion",
            "explanations": [{
                "prediction": _prediction_json(e.prediction),
                "words": [{"text": w.text, "start": w.start, "end": w.end, "weights": w.weights} for w in e.words],
                "explained_tokens": e.explained_tokens, "capped": e.capped,
            } for e in explanations],
        })

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(INDEX_HTML, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/healthz", response_model=Health, summary="Liveness: 200 while the process runs")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", response_model=Health, summary="Readiness: 200 once the model is loaded and warmed up",
             responses={503: {"model": Health, "description": "loading, warming up or shutting down"}})
    async def readyz() -> Response:
        if state.ready:
            return json_response({"status": "ready"})
        return json_response({"status": "draining" if state.draining else "starting"}, 503,
                             {"Retry-After": "1"})

    @app.get("/model", response_model=ModelInfo, dependencies=[auth], summary="The model being served",
             responses={401: {"model": ErrorResponse, "description": "missing or wrong API key"}})
    async def model_info() -> Response:
        predictor = state.predictor
        assert predictor is not None
        card = predictor.card
        return json_response({
            "name": predictor.name, "version": predictor.version, "labels": list(predictor.labels),
            "max_tokens": predictor.max_tokens, "truncation": card.get("truncation", {}),
            "provider": predictor.provider, "sha256": predictor.model_sha256,
            "metrics": card.get("metrics", {}), "architecture": card.get("architecture", {}),
            "limits": {"max_client_batch": settings.max_client_batch, "max_text_chars": settings.max_text_chars,
                       "max_explain_texts": settings.max_explain_texts,
                       "max_explain_tokens": settings.max_explain_tokens,
                       "max_body_bytes": settings.max_body_bytes},
        })

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _prediction_json(p: Prediction) -> dict[str, Any]:
    return {"label": p.label, "score": p.score, "probabilities": p.probabilities, "tokens": p.tokens,
            "truncated": p.truncated}


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that parses its JSON body itself."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _openapi_with_request_schemas(app: FastAPI, models: list[type[BaseModel]]) -> Any:
    """FastAPI's schema, plus the request models that routes parse themselves (see json_request_body)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for model in models:
                schema["components"]["schemas"][model.__name__] = model.model_json_schema(
                    ref_template="#/components/schemas/{model}")
        return app.openapi_schema

    return openapi


async def _warm_up(state: State) -> None:
    predictor = state.predictor
    assert predictor is not None
    started = time.perf_counter()
    try:
        for _ in range(state.settings.warmup_runs):
            await asyncio.to_thread(predictor.warm_up)
    except Exception:  # readiness stays 503, and the log says why
        log.exception("warm-up failed; the service will not report ready")
        return
    state.warmed_up = True
    log.info("ready", extra={"warmup_ms": round((time.perf_counter() - started) * 1000, 1),
                             "provider": predictor.provider})


def _api_key_check(settings: Settings) -> Callable[[Request], Awaitable[None]]:
    expected = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def require_api_key(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})

    return require_api_key


def _batcher(state: State) -> Batcher:
    """The batcher, once the model is warm (else a 503 the client may retry)."""
    if not state.warmed_up or state.batcher is None:
        state.metrics.rejected.labels("not_ready").inc()
        raise ApiError(503, "not_ready", "the model is warming up", headers={"Retry-After": "1"})
    return state.batcher


async def _finish(state: State, work: Coroutine[Any, Any, R], request: Request) -> R | None:
    """Await queued model work, bounded in time; None if the client disconnected first (the work is then
    withdrawn from the queue if it had not started)."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job, gone}, timeout=state.settings.request_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job in done:
        try:
            return job.result()
        except QueueFullError:
            state.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "overloaded", f"the queue is full ({state.settings.max_queue} texts); retry later",
                           headers={"Retry-After": "1"}) from None
        except NotAcceptingError:
            state.metrics.rejected.labels("draining").inc()
            raise ApiError(503, "not_ready", "the service is shutting down", headers={"Retry-After": "1"}) from None
        except InferenceError:
            state.metrics.rejected.labels("inference_failed").inc()
            raise ApiError(503, "inference_failed", "the model failed on the batch holding this request (see the "
                           "server log); retry", headers={"Retry-After": "1"}) from None
    job.cancel()  # withdraws the texts from the queue if they are still waiting
    if gone in done:
        state.metrics.rejected.labels("client_gone").inc()
        return None
    state.metrics.rejected.labels("timeout").inc()
    raise ApiError(503, "timeout", f"no result within SENTIMENT_REQUEST_TIMEOUT_S = "
                                   f"{state.settings.request_timeout_s} s", headers={"Retry-After": "1"})


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the end)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
