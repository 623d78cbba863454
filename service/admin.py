"""POST /admin/model: the model swap route, served only when SENTIMENT_ADMIN_KEY is set."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_runtime import ModelLoadError
from service.auth import check_admin_key
from service.engine import Engine
from service.errors import ApiError, json_response, validation_error
from service.schemas import ErrorResponse, model_ref
from service.swap import SwapInProgress, rolling_swap
from service.validation import json_object
from service.web import UNAUTHORIZED

log = logging.getLogger("service")


class SwapRequest(BaseModel):
    """Which model directory to serve next; none: the one in service now, read again from disk."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model_dir: str | None = Field(None, description="path of a model directory on the server", max_length=4096)


async def swap_model(request: Request) -> Response:
    """POST /admin/model: load, check and warm a model directory, then serve it (in every process)."""
    engine: Engine = request.app.state.engine
    check_admin_key(request.headers, engine.settings)
    try:
        body = SwapRequest.model_validate(json_object(await request.body() or b"{}"))
    except ValidationError as exc:
        raise validation_error([dict(e) for e in exc.errors(include_url=False, include_input=False)]) from None
    target = Path(body.model_dir) if body.model_dir else None
    try:
        if engine.settings.processes > 1:
            outcome = await rolling_swap(engine, target)
            if not outcome.ok:
                raise ApiError(503, "swap_failed", f"model not swapped: {outcome.reason}", {"Retry-After": "5"})
            return json_response(
                {
                    "status": "swapped",
                    "model": model_ref(outcome.model),
                    "model_dir": str(target or engine.model_dir),
                    "processes": engine.settings.processes,
                }
            )
        model = await engine.swap(target)
    except SwapInProgress:
        raise ApiError(
            409, "swap_in_progress", "another model swap is under way; try again when it has ended"
        ) from None
    except ModelLoadError as exc:
        # The reason names files inside the directory, never a path (model_runtime.ModelLoadError).
        log.warning("model not swapped: %s", exc, extra={"model_dir": str(target)})
        message = f"model not swapped, the old one still serves: not a usable model directory: {exc}"
        raise ApiError(422, "bad_model", message) from None
    return json_response({"status": "swapped", "model": model_ref(model), "model_dir": str(engine.model_dir)})


def register_admin(app: FastAPI) -> None:
    app.add_api_route(
        "/admin/model",
        swap_model,
        methods=["POST"],
        summary="Swap the model without downtime (only when SENTIMENT_ADMIN_KEY is set)",
        description="Loads the model directory (the current one again when none is given) with the start-up "
        "checks, warms it, then serves it; requests already running finish on the old model. A bad directory "
        "is refused with 422 and the old model keeps serving. With several processes the answer is 202 and "
        "the processes are replaced one by one, each ready before the old one leaves.",
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SwapRequest"}}},
            }
        },
        responses={**UNAUTHORIZED, 422: {"model": ErrorResponse, "description": "bad model directory"}},
    )
