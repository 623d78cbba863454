"""The Open Inference Protocol (KServe V2 REST), beside the service's own JSON, over the same lifecycle,
limits, authentication and metrics.

One input, a ``BYTES`` tensor of shape ``[n]`` holding the texts; five outputs: ``label`` (``BYTES``,
``[n]``), ``score`` (``FP32``, ``[n]``), ``probabilities`` (``FP32``, ``[n, labels]``, in the label
order the metadata gives), ``language`` (``BYTES``, ``[n]``: the ISO 639-1 code the text appears to be in,
"" when too short to tell) and ``language_supported`` (``BOOL``, ``[n]``). Tensor data comes as JSON or
with the protocol's binary-data extension
(``Inference-Header-Content-Length``; what ``tritonclient`` sends by default), and outputs are returned
the same way when asked. Every malformed request is a 400 naming the field, in the protocol's error body
``{"error": "..."}``; the texts go through the same validator as every other protocol's. The declared
element count is checked against the limits before any tensor data is read, and every length prefix of
binary data against the buffer.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import Headers

from model_runtime import Prediction, Predictor
from service.adapters.oip_binary import binary_strings, encode_binary
from service.adapters.oip_schema import INPUT, MODEL_ANSWERS, OUTPUTS, answers, tensor_metadata
from service.auth import check_api_key
from service.config import Settings
from service.engine import Engine
from service.errors import SHAPE_STATE, ApiError, json_response, open_inference
from service.lifecycle import Scoring
from service.validation import InvalidInput, TextLimits, check_count, check_texts_at, json_type
from service.version import SERVICE_VERSION

HEADER_LENGTH = "inference-header-content-length"


def _speaks_oip(request: Request) -> None:
    setattr(request.state, SHAPE_STATE, open_inference)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _authorized(request: Request) -> None:
    check_api_key(request.headers, _engine(request).settings)


router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe V2)"], dependencies=[Depends(_speaks_oip)])
EngineDep = Annotated[Engine, Depends(_engine)]


def _served(engine: Engine, name: str, version: str | None = None) -> Predictor:
    model = engine.model
    if name != model.name:
        raise ApiError(404, "unknown_model", f"unknown model {name!r}; this server serves {model.name!r}")
    if version is not None and version != model.version:
        raise ApiError(404, "unknown_version", f"model {name!r} has no version {version!r}; it is {model.version!r}")
    return model


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response(
        {"name": "sentiment-service", "version": SERVICE_VERSION, "extensions": ["binary_tensor_data"]}
    )


@router.get("/health/live", summary="Server liveness")
async def server_live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", summary="Server readiness", responses=answers(503))
async def server_ready(engine: EngineDep) -> Response:
    return json_response({"ready": engine.ready}, 200 if engine.ready else 503)


def _metadata(engine: Engine, name: str, version: str | None) -> Response:
    model = _served(engine, name, version)
    labels = list(model.labels)
    return json_response(
        {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            **tensor_metadata(len(labels)),
            "parameters": {"labels": labels, "max_texts": engine.settings.max_client_batch},
        }
    )


model_routes = APIRouter(dependencies=[Depends(_authorized)])


@model_routes.get("/models/{name}", summary="Model metadata", responses=MODEL_ANSWERS)
async def model_metadata(name: str, engine: EngineDep) -> Response:
    return _metadata(engine, name, None)


@model_routes.get("/models/{name}/versions/{version}", summary="Model metadata (one version)", responses=MODEL_ANSWERS)
async def model_version_metadata(name: str, version: str, engine: EngineDep) -> Response:
    return _metadata(engine, name, version)


@model_routes.get("/models/{name}/ready", summary="Model readiness", responses=MODEL_ANSWERS)
async def model_ready(name: str, engine: EngineDep) -> Response:
    _served(engine, name)
    return json_response({"name": name, "ready": engine.ready}, 200 if engine.ready else 503)


@model_routes.get(
    "/models/{name}/versions/{version}/ready", summary="Model readiness (one version)", responses=MODEL_ANSWERS
)
async def model_version_ready(name: str, version: str, engine: EngineDep) -> Response:
    _served(engine, name, version)
    return json_response({"name": name, "ready": engine.ready}, 200 if engine.ready else 503)


router.include_router(model_routes)
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def _object(value: Any, field: str) -> dict[str, Any]:
    """``parameters`` and the like: absent (None) is an empty object; anything else must be an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(field, f"must be an object, not {json_type(value)}")
    return value


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, not {json_type(value)}")
    return value


def _split_body(body: bytes, headers: Headers) -> tuple[dict[str, Any], bytes]:
    """The JSON inference header and the binary tensor data after it (the binary-data extension)."""
    size = len(body)
    if (declared := headers.get(HEADER_LENGTH)) is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length", "must be an integer") from None
        if not 0 < size <= len(body):
            raise InvalidInput("Inference-Header-Content-Length", f"{size} is not within the body's {len(body)} bytes")
    try:
        header = orjson.loads(body[:size])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(None, f"the inference request is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidInput(None, f"the inference request must be a JSON object, not {json_type(header)}")
    return header, body[size:]


def _flag(parameters: dict[str, Any], name: str, field: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{field}.{name}", f"must be true or false, not {json_type(value)}")
    return value


def _outputs(header: dict[str, Any]) -> list[tuple[str, bool]]:
    """The outputs asked for (all by default), each with whether it goes as binary data."""
    binary_default = _flag(_object(header.get("parameters"), "parameters"), "binary_data_output", "parameters", False)
    wanted = header.get("outputs")
    if wanted is None:
        return [(name, binary_default) for name in OUTPUTS]
    if not isinstance(wanted, list):
        raise InvalidInput("outputs", f"must be an array, not {json_type(wanted)}")
    chosen = []
    for i, request in enumerate(wanted):
        if not isinstance(request, dict) or request.get("name") not in OUTPUTS:
            name = request.get("name") if isinstance(request, dict) else None
            raise InvalidInput(f"outputs[{i}].name", f"unknown output {name!r}; the outputs are {', '.join(OUTPUTS)}")
        field = f"outputs[{i}].parameters"
        chosen.append(
            (request["name"], _flag(_object(request.get("parameters"), field), "binary_data", field, binary_default))
        )
    return chosen


def _texts(header: dict[str, Any], binary: bytes, limits: TextLimits) -> list[str]:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput("inputs", f"exactly one input tensor is expected: {INPUT!r} (BYTES, shape [n])")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise InvalidInput("inputs[0].name", f"unknown input {tensor.get('name')!r}; the input is named {INPUT!r}")
    if tensor.get("datatype") != "BYTES":
        raise InvalidInput("inputs[0].datatype", f"must be BYTES, not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or len(shape) != 1:
        raise InvalidInput("inputs[0].shape", f"must be [n], not {shape!r}")
    count = _integer(shape[0], "inputs[0].shape[0]")
    check_count(count, INPUT, limits)  # before any data is read
    parameters = _object(tensor.get("parameters"), "inputs[0].parameters")
    unknown = set(parameters) - {"binary_data_size"}
    if unknown:
        raise InvalidInput("inputs[0].parameters", f"unknown {sorted(unknown)}; only binary_data_size is read")
    size = parameters.get("binary_data_size")
    if size is not None:
        data: Any = binary_strings(binary, _integer(size, "inputs[0].parameters.binary_data_size"), count)
    else:
        if binary:
            raise InvalidInput("inputs[0].parameters.binary_data_size", "binary data follows but none is declared")
        data = tensor.get("data")  # a one-dimensional tensor: a flat list
    if not isinstance(data, list) or len(data) != count:
        found = len(data) if isinstance(data, list) else json_type(data)
        raise InvalidInput("inputs[0].data", f"shape [{count}] but {found} values")
    at = [(f"{INPUT}[{i}]", text) for i, text in enumerate(data)]
    return check_texts_at(at, limits.max_chars, limits.refuse_language)


def _response(
    result: tuple[Predictor, list[Prediction]], request: tuple[dict[str, Any], list[tuple[str, bool]]]
) -> Response:
    (predictor, predictions), (header, outputs) = result, request
    n, labels = len(predictions), predictor.labels
    tensors: dict[str, tuple[str, list[int], Any]] = {
        "label": ("BYTES", [n], [p.label for p in predictions]),
        "score": ("FP32", [n], np.array([p.score for p in predictions], dtype=np.float32)),
        "probabilities": (
            "FP32",
            [n, len(labels)],
            np.array([[p.probabilities[x] for x in labels] for p in predictions], dtype=np.float32),
        ),
        "language": ("BYTES", [n], [(p.language.code if p.language else None) or "" for p in predictions]),
        "language_supported": (
            "BOOL",
            [n],
            np.array([p.language is None or p.language.supported for p in predictions]),
        ),
    }
    entries, blobs = [], []
    for name, binary in outputs:
        datatype, shape, values = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = encode_binary(datatype, values)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.reshape(-1).tolist() if isinstance(values, np.ndarray) else values
        entries.append(entry)
    body: dict[str, Any] = {"model_name": predictor.name, "model_version": predictor.version, "outputs": entries}
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


def scoring_routes(settings: Settings, engine: Engine) -> dict[tuple[str, str], Scoring]:
    refuse = engine.language if settings.unsupported_language == "refuse" else None
    limits = TextLimits(settings.max_client_batch, settings.max_text_chars, refuse)

    def parse(body: bytes, headers: Headers, _: dict[str, str]) -> tuple[list[str], Any]:
        header, binary = _split_body(body, headers)
        if "id" in header and not isinstance(header["id"], str):
            raise InvalidInput("id", f"must be a string, not {json_type(header['id'])}")
        outputs = _outputs(header)
        return _texts(header, binary, limits), (header, outputs)

    def check(engine: Engine, params: dict[str, str]) -> None:
        _served(engine, params["name"], params.get("version"))

    infer = Scoring("predict", open_inference, 400, parse, _response, check)
    return {("POST", path): infer for path in INFER_PATHS}
