"""Assembles the app: settings, metrics, engine (in the lifespan), middleware, fast path, routes, errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from model_runtime import Predictor
from service import admin, oip, routes
from service.config import SERVICE_VERSION, Settings
from service.deps import Service
from service.engine import Engine, load_model
from service.errors import error_for, install_error_handlers
from service.fastpath import FastPath
from service.middleware import RequestContextMiddleware
from service.schemas import ErrorResponse, make_predict_request
from service.swap import install_signal_handlers


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; ``predictor`` is an already loaded model (else the lifespan loads settings.model_dir)."""
    settings = settings or Settings()
    service = Service(
        settings,
        predict_request=make_predict_request(settings.max_client_batch, settings.max_text_chars),
        explain_request=make_predict_request(settings.max_explain_texts, settings.max_text_chars, "ExplainRequest"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings, predictor or load_model(settings), service.metrics)
        service.engine = engine
        if service.draining:
            engine.begin_draining()
        await engine.start(wait_for_warm_up=settings.processes > 1)
        install_signal_handlers(engine, service.begin_draining)
        try:
            yield
        finally:
            await engine.drain()

    app = FastAPIOffline(
        title="Sentiment service",
        version=SERVICE_VERSION,
        description="Sentiment scores for English texts from a bidirectional LSTM served by ONNX Runtime. "
        "Send one text or a batch to `POST /predict`.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse, "description": "invalid input (names the field and limit)"}},
    )
    app.state.service = service
    routes.register(app, settings.max_explain_texts, settings.max_explain_tokens)
    app.include_router(oip.router)
    request_models: list[type[BaseModel]] = [service.predict_request, service.explain_request, oip.InferenceRequest]
    if settings.admin_key is not None:  # no key, no route: the swap cannot even be probed
        admin.register_admin(app)
        request_models.append(admin.SwapRequest)
    app.openapi = routes.openapi_with_request_schemas(app, request_models)  # type: ignore[method-assign]  # FastAPI's documented way
    install_error_handlers(app, settings, service.metrics)
    # Innermost first: the fast path sits right in front of FastAPI's router, the request middleware outside it.
    app.add_middleware(
        FastPath,
        routes={("POST", "/predict"): routes.predict},
        on_error=lambda request, exc: error_for(request, exc, settings, service.metrics),
    )
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics, max_body_bytes=settings.max_body_bytes)
    return app
