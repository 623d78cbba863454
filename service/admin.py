"""POST /admin/model: the model swap route, served only when SENTIMENT_ADMIN_KEY is set."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from model_runtime import ModelLoadError
from service.deps import ServiceDep, check_admin_key
from service.errors import ApiError, json_response, parse_json_body
from service.routes import UNAUTHORIZED, json_request_body
from service.schemas import ErrorResponse, model_ref
from service.swap import rolling_swap


class SwapRequest(BaseModel):
    """Which model directory to serve next; none: the one in service now, read again from disk."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model_dir: str | None = Field(None, description="path of a model directory on the server", max_length=4096)


async def swap_model(request: Request, service: ServiceDep) -> Response:
    """POST /admin/model: load, check and warm a model directory, then serve it (in every process)."""
    check_admin_key(request, service)
    body = parse_json_body(await request.body() or b"{}", request.headers.get("content-type"), SwapRequest)
    engine = service.loaded_engine()
    target = Path(body.model_dir) if body.model_dir else None
    try:
        if service.settings.processes > 1:
            await rolling_swap(engine, target)
            return json_response({"status": "restarting", "model_dir": str(target or engine.model_dir)}, 202)
        predictor = await engine.swap(target)
    except ModelLoadError as exc:
        raise ApiError(422, "bad_model", f"model not swapped, the old one still serves: {exc}") from None
    return json_response({"status": "swapped", "model": model_ref(predictor), "model_dir": str(engine.model_dir)})


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
        openapi_extra=json_request_body("SwapRequest"),
        responses={**UNAUTHORIZED, 422: {"model": ErrorResponse, "description": "bad model directory"}},
    )
