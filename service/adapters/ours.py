"""This service's own JSON: ``POST /predict`` and ``POST /explain``.

A body is ``{"text": "..."}`` or ``{"texts": ["...", ...]}`` (exactly one of the two, neither null, no
other field); the answer is ``{"model": ..., "predictions": [...]}`` or ``{"model": ..., "method":
"occlusion", "explanations": [...]}``; errors are ``{"error": {"code", "message", "details",
"request_id"}}`` with invalid input as 422.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response

from model_runtime import Explanation, Prediction, Predictor
from service.config import Settings
from service.engine import Engine
from service.errors import check_json_media_type, json_response, ours
from service.lifecycle import Scoring
from service.schemas import explain_response, predict_response
from service.validation import TextLimits, check_text, check_texts, json_object, one_field

FIELDS = {"text": "a string", "texts": "an array of strings"}


def texts_of(body: bytes, headers: Headers, limits: TextLimits) -> list[str]:
    """The texts of a ``{"text"}`` or ``{"texts"}`` body, validated (service.validation)."""
    check_json_media_type(headers)
    data = json_object(body)
    if one_field(data, FIELDS) == "text":
        return [check_text(data["text"], "text", limits.max_chars, limits.refuse_language)]
    return check_texts(data["texts"], "texts", limits)


def scoring_routes(settings: Settings, engine: Engine) -> dict[tuple[str, str], Scoring]:
    refuse = engine.language if settings.unsupported_language == "refuse" else None
    predict_limits = TextLimits(settings.max_client_batch, settings.max_text_chars, refuse)
    explain_limits = TextLimits(settings.max_explain_texts, settings.max_text_chars, refuse)

    def parse_predict(body: bytes, headers: Headers, _: dict[str, str]) -> tuple[list[str], None]:
        return texts_of(body, headers, predict_limits), None

    def parse_explain(body: bytes, headers: Headers, _: dict[str, str]) -> tuple[list[str], None]:
        return texts_of(body, headers, explain_limits), None

    def predicted(result: tuple[Predictor, list[Prediction]], _: Any) -> Response:
        return json_response(predict_response(*result))

    def explained(result: tuple[Predictor, list[Explanation]], _: Any) -> Response:
        return json_response(explain_response(*result))

    return {
        ("POST", "/predict"): Scoring("predict", ours, 422, parse_predict, predicted),
        ("POST", "/explain"): Scoring("explain", ours, 422, parse_explain, explained),
    }
