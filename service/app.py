"""Assembles the app: settings, metrics, the engine (started in the lifespan), middleware, the scoring
routes' lifecycle in front of FastAPI's router, the other routes, errors and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from model_runtime import Predictor
from service import admin, web
from service.adapters import documents, oip, oip_schema, ours
from service.adapters.documents_schema import make_analyze_request
from service.config import Settings
from service.engine import Engine, load_model
from service.errors import install_error_handlers
from service.jobs import routes as jobs
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.lifecycle import ScoringRoutes
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.openapi import document_scoring_routes, with_request_schemas
from service.schemas import make_predict_request
from service.swap import install_signal_handlers
from service.validation import TextLimits
from service.version import SERVICE_VERSION


async def start_jobs(app: FastAPI, settings: Settings, engine: Engine, metrics: Metrics) -> JobRunner:
    """The job store (opened off the event loop: a database may take its time) and this process's runner."""
    store = await asyncio.to_thread(JobStore, settings.jobs_url())
    app.state.job_store = store
    runner = JobRunner(store, engine, settings, metrics)
    runner.start()
    return runner


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; ``predictor`` is an already loaded model (else the lifespan loads settings.model_dir)."""
    settings = settings or Settings()
    metrics = Metrics()
    engine = Engine(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start(predictor or load_model(settings), wait_for_warm_up=settings.processes > 1)
        install_signal_handlers(engine)
        runner = await start_jobs(app, settings, engine, metrics) if settings.jobs else None
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            await engine.drain()
            if runner is not None:
                runner.store.close()

    app = FastAPIOffline(
        title="Sentiment service",
        version=SERVICE_VERSION,
        description="Sentiment scores for English texts from a bidirectional LSTM served by ONNX Runtime. "
        "Send one text or a batch to `POST /predict`.",
        lifespan=lifespan,
    )
    app.state.engine, app.state.metrics = engine, metrics
    scoring = {
        **ours.scoring_routes(settings, engine),
        **documents.scoring_routes(settings, engine),
        **oip.scoring_routes(settings, engine),
    }
    document_scoring_routes(app, scoring)
    web.register(app)
    app.include_router(oip.router)
    if settings.jobs:
        jobs.register(app)
    request_models: list[type[BaseModel]] = [
        make_predict_request(settings.max_client_batch, settings.max_text_chars),
        make_predict_request(settings.max_explain_texts, settings.max_text_chars, "ExplainRequest"),
        make_analyze_request(settings.max_documents, settings.max_document_chars),
    ]
    if settings.admin_key is not None:  # no key, no route: the swap cannot even be probed
        admin.register_admin(app)
        request_models.append(admin.SwapRequest)
    inference = oip_schema.inference_request_schema(TextLimits(settings.max_client_batch, settings.max_text_chars))
    app.openapi = with_request_schemas(app, request_models, inference)  # type: ignore[method-assign]  # FastAPI's way
    install_error_handlers(app, settings, metrics)
    # Innermost first: the scoring routes sit right in front of FastAPI's router, the request middleware outside.
    app.add_middleware(ScoringRoutes, engine=engine, routes=scoring)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        uploads={"/jobs": (settings.jobs_max_upload_bytes, "SENTIMENT_JOBS_MAX_UPLOAD_BYTES")} if settings.jobs else {},
        templates=lambda: [*app.openapi()["paths"], *(str(r.path) for r in app.router.routes if hasattr(r, "path"))],
    )
    return app
