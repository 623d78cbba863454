"""What the Open Inference Protocol routes promise, for the OpenAPI document: the exact JSON Schema of an
inference request as service.adapters.oip reads it, its answers, and the error body of every refusal."""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

from model_runtime import NOT_ONLY_WHITESPACE
from service.validation import TextLimits

INPUT = "text"
OUTPUTS = ("label", "score", "probabilities", "language", "language_supported")


def tensor_metadata(labels: int) -> dict[str, list[dict[str, Any]]]:
    """The model metadata's tensors: the texts in, label, score and the probabilities over ``labels`` out."""
    return {
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, labels]},
            {"name": "language", "datatype": "BYTES", "shape": [-1]},
            {"name": "language_supported", "datatype": "BOOL", "shape": [-1]},
        ],
    }


class OipError(TypedDict):
    error: str


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "malformed request or invalid texts (names the field and the limit)",
        401: "missing or wrong API key",
        404: "unknown model or version",
        408: "the body did not arrive within SENTIMENT_BODY_TIMEOUT_S",
        413: "body over SENTIMENT_MAX_BODY_BYTES",
        415: "unsupported Content-Encoding",
        429: "full; retry after Retry-After seconds",
        503: "not ready, draining, timed out, or the model run failed",
    }
    return {status: {"model": OipError, "description": reasons[status]} for status in statuses}


MODEL_ANSWERS = answers(401, 404, 503)
INFER_ANSWERS = answers(400, 401, 404, 408, 413, 415, 429, 503)


def inference_request_schema(limits: TextLimits) -> dict[str, dict[str, Any]]:
    """The JSON Schema of an inference request as this server reads it, exactly: one BYTES tensor named
    ``text`` whose shape [n] (1 to the limit) matches its n texts, each a text as service.validation has
    it; optional outputs by name; ``id`` and ``parameters``. (The binary-data extension carries the texts
    after the JSON header, ``Inference-Header-Content-Length`` bytes long, which JSON Schema cannot say.)"""
    return {
        "InferenceRequest": _REQUEST,
        "InputTensor": _input_tensor(limits),
        "RequestedOutput": _REQUESTED_OUTPUT,
        "InferenceResponse": _RESPONSE,
    }


def _input_tensor(limits: TextLimits) -> dict[str, Any]:
    text = {"type": "string", "maxLength": limits.max_chars, "pattern": NOT_ONLY_WHITESPACE}
    sized = [
        {"properties": {"shape": {"const": [n]}, "data": {"minItems": n, "maxItems": n}}}
        for n in range(1, limits.max_texts + 1)
    ]
    return {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": INPUT},
            "datatype": {"const": "BYTES"},
            "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1},
            "data": {"type": "array", "items": text, "examples": [["Loved it.", "Dull."]]},
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
        "oneOf": sized,
        "description": f"the texts: shape [n] and n strings, 1 <= n <= {limits.max_texts}",
    }


_REQUESTED_OUTPUT = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"enum": list(OUTPUTS)},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
    },
}
_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/InputTensor"},
            "minItems": 1,
            "maxItems": 1,
        },
        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/RequestedOutput"}},
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
    },
    "description": "An Open Inference Protocol request: one BYTES tensor named `text`, optional `outputs` to "
    "pick, an `id` to echo and `parameters`.",
}
_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"enum": list(OUTPUTS)},
                    "datatype": {"enum": ["BYTES", "FP32", "BOOL"]},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
            },
        },
    },
}


INFER_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "labels, scores and probabilities; with binary outputs asked for, the JSON header then "
        "the tensors (application/octet-stream, Inference-Header-Content-Length bytes of JSON first)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceResponse"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
