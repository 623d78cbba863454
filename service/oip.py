"""The Open Inference Protocol (KServe V2 REST), beside the service's own JSON, over the same engine,
limits, authentication and metrics.

One input, a ``BYTES`` tensor of shape ``[n]`` holding the texts; three outputs: ``label`` (``BYTES``,
``[n]``), ``score`` (``FP32``, ``[n]``) and ``probabilities`` (``FP32``, ``[n, labels]``, in the label
order the metadata gives). Tensor data comes as JSON or with the protocol's binary-data extension
(``Inference-Header-Content-Length``; what ``tritonclient`` sends by default), and outputs are returned
the same way when asked. Errors have the protocol's shape, ``{"error": "..."}`` (service.errors).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from model_runtime import Prediction, Predictor
from service.config import SERVICE_VERSION
from service.deps import Service, ServiceDep, check_api_key, get_service
from service.errors import ApiError, json_response
from service.routes import CLIENT_GONE, admitted, finish, json_request_body

INPUT = "text"
OUTPUTS = ("label", "score", "probabilities")
HEADER_LENGTH = "inference-header-content-length"
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe V2)"])


class OipError(TypedDict):
    error: str


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "bad tensor (names the input)",
        401: "missing or wrong API key",
        404: "unknown model or version",
        413: "body over SENTIMENT_MAX_BODY_BYTES",
        429: "full; retry after Retry-After seconds",
        503: "not ready, draining, timed out, or the model run failed",
    }
    return {status: {"model": OipError, "description": reasons[status]} for status in statuses}


MODEL_ANSWERS = _answers(401, 404)
READY_ANSWERS = _answers(401, 404, 503)
INFER_ANSWERS = _answers(400, 401, 404, 413, 429, 503)


class InputTensor(BaseModel):
    """The documented shape of the one input tensor (the handler reads the body itself, binary data too)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(examples=["text"])
    datatype: str = Field(examples=["BYTES"])
    shape: list[int] = Field(examples=[[2]])
    data: list[str] | None = Field(None, examples=[["Loved it.", "Dull."]])


class InferenceRequest(BaseModel):
    """An Open Inference Protocol request: ``inputs`` (one BYTES tensor named ``text``), optional ``outputs``
    to pick, an ``id`` to echo and ``parameters``."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    inputs: list[InputTensor]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


def bad_tensor(message: str) -> ApiError:
    return ApiError(400, "bad_tensor", message)


def _model(service: Service, name: str, version: str | None = None) -> Predictor:
    predictor = service.loaded_engine().predictor
    if name != predictor.name:
        raise ApiError(404, "unknown_model", f"unknown model {name!r}; this server serves {predictor.name!r}")
    if version is not None and version != predictor.version:
        raise ApiError(
            404, "unknown_version", f"model {name!r} has no version {version!r}; it is {predictor.version!r}"
        )
    return predictor


@router.get("", summary="Server metadata")
async def server_metadata(service: ServiceDep) -> Response:
    return json_response(
        {"name": "sentiment-service", "version": SERVICE_VERSION, "extensions": ["binary_tensor_data"]}
    )


@router.get("/health/live", summary="Server liveness")
async def server_live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", summary="Server readiness", responses=_answers(503))
async def server_ready(service: ServiceDep) -> Response:
    return json_response({"ready": service.ready}, 200 if service.ready else 503)


def _metadata(service: Service, name: str, version: str | None) -> Response:
    predictor = _model(service, name, version)
    labels = list(predictor.labels)
    return json_response(
        {
            "name": predictor.name,
            "versions": [predictor.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "score", "datatype": "FP32", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
            ],
            "parameters": {"labels": labels, "max_texts": service.settings.max_client_batch},
        }
    )


@router.get("/models/{name}", summary="Model metadata", responses=MODEL_ANSWERS)
async def model_metadata(name: str, service: ServiceDep) -> Response:
    return _metadata(service, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata (one version)", responses=MODEL_ANSWERS)
async def model_version_metadata(name: str, version: str, service: ServiceDep) -> Response:
    return _metadata(service, name, version)


@router.get("/models/{name}/ready", summary="Model readiness", responses=READY_ANSWERS)
async def model_ready(name: str, service: ServiceDep) -> Response:
    _model(service, name)
    return json_response({"name": name, "ready": service.ready}, 200 if service.ready else 503)


@router.get("/models/{name}/versions/{version}/ready", summary="Model readiness (one version)", responses=READY_ANSWERS)
async def model_version_ready(name: str, version: str, service: ServiceDep) -> Response:
    _model(service, name, version)
    return json_response({"name": name, "ready": service.ready}, 200 if service.ready else 503)


@router.post(
    "/models/{name}/infer",
    summary="Inference: texts in, labels, scores and probabilities out",
    responses=INFER_ANSWERS,
    openapi_extra=json_request_body("InferenceRequest"),
)
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference (one version)",
    responses=INFER_ANSWERS,
    openapi_extra=json_request_body("InferenceRequest"),
)
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    service = get_service(request)
    check_api_key(request, service)
    _model(service, name, version)
    engine = service.ready_engine()
    async with admitted(request, engine):
        header, binary = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        texts = _texts(header, binary, service)
        scored = await finish(service, engine.predict(texts), request)
    if scored is None:
        return Response(status_code=CLIENT_GONE)
    return _response(header, *scored)


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON inference header and the binary tensor data after it (the binary-data extension)."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ApiError(400, "bad_request", "Inference-Header-Content-Length must be an integer") from None
        if not 0 < size <= len(body):
            raise ApiError(400, "bad_request", f"Inference-Header-Content-Length {size} exceeds the body")
    try:
        header = orjson.loads(body[:size])
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_request", f"the inference request is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ApiError(400, "bad_request", "the inference request must be a JSON object")
    return header, body[size:]


def _texts(header: dict[str, Any], binary: bytes, service: Service) -> list[str]:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad_tensor(f"exactly one input tensor is expected: {INPUT!r} (BYTES, shape [n])")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise bad_tensor(f"unknown input {tensor.get('name')!r}; the input is named {INPUT!r}")
    if tensor.get("datatype") != "BYTES":
        raise bad_tensor(f"input {INPUT!r} must have datatype BYTES, not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)):
        raise bad_tensor(f"input {INPUT!r} must have shape [n], not {shape!r}")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    data = _binary_strings(binary, size) if size is not None else tensor.get("data")
    if isinstance(data, list) and data and isinstance(data[0], list):  # nested row-major form
        data = [x for row in data for x in (row if isinstance(row, list) else [row])]
    if not isinstance(data, list) or len(data) != shape[0]:
        raise bad_tensor(f"input {INPUT!r} has shape {shape} but {len(data) if isinstance(data, list) else 0} values")
    return _checked_texts(data, service)


def _checked_texts(data: list[Any], service: Service) -> list[str]:
    limit, chars = service.settings.max_client_batch, service.settings.max_text_chars
    if not 1 <= len(data) <= limit:
        raise bad_tensor(f"input {INPUT!r} must hold 1 to {limit} texts, not {len(data)}")
    for i, text in enumerate(data):
        if not isinstance(text, str) or not text.strip():
            raise bad_tensor(f"input {INPUT!r}[{i}] must be a non-empty text")
        if len(text) > chars:
            raise bad_tensor(f"input {INPUT!r}[{i}] has {len(text)} characters; the limit is {chars}")
    return list(data)


def _binary_strings(binary: bytes, size: Any) -> list[str]:
    """BYTES elements of the binary-data extension: each a 4-byte little-endian length, then the bytes."""
    if not isinstance(size, int) or size > len(binary):
        raise bad_tensor(f"input {INPUT!r}: binary_data_size {size!r} does not match the body")
    out, position = [], 0
    while position < size:
        (length,) = struct.unpack_from("<I", binary, position)
        chunk = binary[position + 4 : position + 4 + length]
        position += 4 + length
        try:
            out.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_tensor(f"input {INPUT!r}: element {len(out)} is not UTF-8") from None
    return out


def _response(header: dict[str, Any], predictor: Predictor, predictions: list[Prediction]) -> Response:
    n, labels = len(predictions), predictor.labels
    tensors: dict[str, tuple[str, list[int], Any]] = {
        "label": ("BYTES", [n], [p.label for p in predictions]),
        "score": ("FP32", [n], np.array([p.score for p in predictions], dtype=np.float32)),
        "probabilities": (
            "FP32",
            [n, len(labels)],
            np.array([[p.probabilities[x] for x in labels] for p in predictions], dtype=np.float32),
        ),
    }
    binary_default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    wanted = header.get("outputs") or [{"name": name} for name in OUTPUTS]
    outputs, blobs = [], []
    for request in wanted:
        name = request.get("name") if isinstance(request, dict) else None
        if name not in tensors:
            raise bad_tensor(f"unknown output {name!r}; the outputs are {', '.join(OUTPUTS)}")
        datatype, shape, values = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if (request.get("parameters") or {}).get("binary_data", binary_default):
            blob = _encode_binary(datatype, values)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.reshape(-1).tolist() if isinstance(values, np.ndarray) else values
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": predictor.name, "model_version": predictor.version, "outputs": outputs}
    if "id" in header:
        body["id"] = header["id"]
    json_part = orjson.dumps(body)
    if not blobs:
        return Response(json_part, media_type="application/json")
    return Response(
        json_part + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(json_part))},
    )


def _encode_binary(datatype: str, values: Any) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode("utf-8") for v in values))
    return bytes(np.ascontiguousarray(values, dtype="<f4").tobytes())
