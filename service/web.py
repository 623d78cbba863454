"""The routes that score nothing: the web page, liveness and readiness, the model in service, metrics. They
only ask the engine (``request.app.state.engine``), which owns the model and readiness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from service.auth import check_api_key
from service.engine import Engine
from service.errors import json_response
from service.metrics import Metrics
from service.schemas import ErrorResponse, Health, ModelInfo, model_info
from service.supervisor import processes_status

# The web page at /: one file, inline CSS and JS; the policy forbids it to load or call anything elsewhere.
INDEX_HTML = (Path(__file__).resolve().parent / "static" / "index.html").read_bytes()
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"}
}


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def authorized(request: Request) -> None:
    check_api_key(request.headers, engine_of(request).settings)


EngineDep = Annotated[Engine, Depends(engine_of)]


async def index() -> Response:
    return Response(INDEX_HTML, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def healthz() -> Response:
    return json_response({"status": "ok"})


async def readyz(engine: EngineDep) -> Response:
    """This process's readiness; with several processes also how many of them serve."""
    body: dict[str, Any] = {"status": "ready" if engine.ready else engine.state}
    if (processes := processes_status()) is not None:
        body["processes"] = processes
    if engine.ready:
        return json_response(body)
    return json_response(body, 503, {"Retry-After": "1"})


async def model(engine: EngineDep) -> Response:
    return json_response(model_info(engine.model, engine.settings, processes_status()))


async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def register(app: FastAPI) -> None:
    """Add every route that scores nothing to ``app`` with its OpenAPI description."""
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
        responses={503: {"model": Health, "description": "starting (loading, warming up) or draining"}},
    )
    app.add_api_route(
        "/model",
        model,
        methods=["GET"],
        response_model=ModelInfo,
        dependencies=[Depends(authorized)],
        summary="The model being served",
        responses={**UNAUTHORIZED, 503: {"model": ErrorResponse, "description": "the model is not loaded yet"}},
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
