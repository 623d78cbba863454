"""The OpenAPI document: the scoring routes (served by ``service.lifecycle`` in front of FastAPI's router)
described as FastAPI routes, and the request models those routes read themselves added as components,
their nested definitions hoisted so that every ``$ref`` resolves."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service.adapters.documents_schema import AnalyzeResponse
from service.adapters.oip_schema import INFER_ANSWERS, INFER_OK
from service.lifecycle import Scoring, serve
from service.schemas import ErrorResponse, ExplainResponse, PredictResponse

SCORING_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    408: {"model": ErrorResponse, "description": "the body did not arrive within SENTIMENT_BODY_TIMEOUT_S"},
    413: {"model": ErrorResponse, "description": "body over SENTIMENT_MAX_BODY_BYTES"},
    415: {"model": ErrorResponse, "description": "the body is not JSON, or its Content-Encoding is not gzip"},
    422: {"model": ErrorResponse, "description": "invalid input (names the field and the limit)"},
    429: {"model": ErrorResponse, "description": "queue full; retry after Retry-After seconds"},
    503: {"model": ErrorResponse, "description": "not ready, draining, timed out, or the model run failed"},
}
ROUTE_DOCS: dict[str, dict[str, Any]] = {
    "/predict": {
        "summary": "Score the sentiment of one or more texts",
        "response_model": PredictResponse,
        "responses": SCORING_ERRORS,
        "request": "PredictRequest",
    },
    "/explain": {
        "summary": "Explain predictions: how much each word pushed each label (occlusion)",
        "description": "Scores each text once as is and once per word with that word replaced by the unknown "
        "token, in one batch, and reports each word's change in each label's log-odds. Costs about n + 1 "
        "predictions for a text of n words. Word offsets count Unicode code points.",
        "response_model": ExplainResponse,
        "responses": SCORING_ERRORS,
        "request": "ExplainRequest",
    },
    "/analyze": {
        "summary": "Read documents sentence by sentence: each sentence's label with its offsets, and a verdict",
        "description": "Splits each document into sentences, scores them all in one job, and gives each "
        "document a verdict (one of the model's labels, or mixed) and its language. A document that cannot be "
        "scored gets its own error and the others are scored. Offsets count Unicode code points.",
        "response_model": AnalyzeResponse,
        "responses": SCORING_ERRORS,
        "request": "AnalyzeRequest",
    },
    "/v2/models/{name}/infer": {
        "summary": "Inference: texts in, labels, scores and probabilities out",
        "responses": {**INFER_OK, **INFER_ANSWERS},
        "request": "InferenceRequest",
        "tags": ["Open Inference Protocol (KServe V2)"],
    },
    "/v2/models/{name}/versions/{version}/infer": {
        "summary": "Inference (one version)",
        "responses": {**INFER_OK, **INFER_ANSWERS},
        "request": "InferenceRequest",
        "tags": ["Open Inference Protocol (KServe V2)"],
    },
}


def _endpoint(scoring: Scoring) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:  # reached only if the lifecycle's router is bypassed
        return await serve(request, scoring, request.app.state.engine)

    return endpoint


def document_scoring_routes(app: FastAPI, routes: dict[tuple[str, str], Scoring]) -> None:
    for (method, path), scoring in routes.items():
        docs = dict(ROUTE_DOCS[path])
        body = {"$ref": f"#/components/schemas/{docs.pop('request')}"}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        extra = {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}
        app.add_api_route(
            path, _endpoint(scoring), methods=[method], openapi_extra={**extra, "parameters": parameters}, **docs
        )


def with_request_schemas(
    app: FastAPI, models: list[type[BaseModel]], schemas: dict[str, dict[str, Any]]
) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema, plus the bodies that routes read themselves: pydantic ``models`` (their nested
    definitions hoisted into the components) and plain JSON ``schemas``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema["components"]["schemas"]
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            components.update(schemas)
        return app.openapi_schema or {}

    return openapi
