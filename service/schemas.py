"""Request and response bodies. Input limits come from the settings, so the OpenAPI schema shows them."""

from __future__ import annotations

from typing import (
    Annotated,
    Any,
    NotRequired,  # pydantic needs typing_extensions' TypedDict before Python 3.12
)

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from typing_extensions import TypedDict

from model_runtime import NOT_ONLY_WHITESPACE, Explanation, Language, Prediction, Predictor
from model_runtime.contract import SHIPPED_MODEL_NAME, SHIPPED_MODEL_VERSION
from service.config import Settings

REVIEW_EXAMPLE = "A moving, beautifully shot film with a terrific cast. I loved every minute of it."


def _exactly_one_in_schema(schema: dict[str, Any]) -> None:
    """Publish the real contract: exactly one of the two fields, neither of them null."""
    names = list(schema["properties"])
    for name in names:
        prop = schema["properties"][name]
        prop.pop("default", None)
        non_null = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
        prop.update(non_null[0])
    schema["oneOf"] = [{"required": [name]} for name in names]


class PredictRequestBase(BaseModel):
    """The documented request body (the adapter reads bodies itself, through service.validation)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_exactly_one_in_schema)


def make_predict_request(
    max_client_batch: int, max_text_chars: int, name: str = "PredictRequest"
) -> type[PredictRequestBase]:
    """The request model for the configured limits (texts per request, characters per text)."""
    text_type = Annotated[
        str,
        StringConstraints(max_length=max_text_chars),
        Field(json_schema_extra={"pattern": NOT_ONLY_WHITESPACE}),
    ]
    return create_model(
        name,
        __base__=PredictRequestBase,
        text=(
            text_type | None,
            Field(None, description=f"one text, at most {max_text_chars:,} characters", examples=[REVIEW_EXAMPLE]),
        ),
        texts=(
            list[text_type] | None,
            Field(
                None,
                min_length=1,
                max_length=max_client_batch,
                description=f"1 to {max_client_batch} texts, at most {max_text_chars:,} characters each",
                examples=[[REVIEW_EXAMPLE, "Dull, predictable and far too long."]],
            ),
        ),
        __doc__="Give exactly one of `text` or `texts`, neither null. A text needs a character that is not "
        "white space. Predictions come back in input order.",
    )


# Responses: one typed shape each, used both to build the body (plain dicts, serialised by orjson on the hot
# path) and, through FastAPI's response_model, to document it.


class BaseRef(TypedDict):
    name: str
    version: str


class ModelRef(TypedDict):
    name: Annotated[str, Field(examples=[SHIPPED_MODEL_NAME])]
    version: Annotated[str, Field(examples=[SHIPPED_MODEL_VERSION])]
    base: NotRequired[
        Annotated[BaseRef, Field(description="an adapted model's base: the model it was fine-tuned from")]
    ]


PROBABILITIES_EXAMPLE = {"negative": 0.02, "neutral": 0.05, "positive": 0.93}


class LanguageOut(TypedDict):
    code: Annotated[
        str | None,
        Field(
            description="ISO 639-1 code of the language the text appears to be in; null when it is too short to tell",
            examples=["en"],
        ),
    ]
    supported: Annotated[
        bool,
        Field(
            description="whether the model learned this language (a text too short to tell counts as supported)",
            examples=[True],
        ),
    ]


class PredictionOut(TypedDict):
    label: Annotated[str, Field(description="the most probable label", examples=["positive"])]
    score: Annotated[float, Field(description="probability of `label`", examples=[0.93])]
    probabilities: Annotated[
        dict[str, float],
        Field(description="one probability per label of the model; they sum to 1", examples=[PROBABILITIES_EXAMPLE]),
    ]
    tokens: Annotated[int, Field(description="tokens the model scored (after truncation)", examples=[182])]
    truncated: Annotated[
        bool, Field(description="the text was longer than the model's max tokens and was cut", examples=[False])
    ]
    language: LanguageOut


class PredictResponse(TypedDict):
    model: ModelRef
    predictions: list[PredictionOut]


class WordWeightOut(TypedDict):
    text: Annotated[str, Field(description="the word as written in the input: input[start:end]", examples=["great"])]
    start: Annotated[
        int,
        Field(
            description="offset of the word's first character in the input text, counted in Unicode code points "
            "(not UTF-16 units: an emoji outside the Basic Multilingual Plane counts 1)",
            examples=[37],
        ),
    ]
    end: Annotated[int, Field(description="offset just past the word's last character, in code points", examples=[42])]
    weights: Annotated[
        dict[str, float] | None,
        Field(
            description="per label: how much this word raised that label's log-odds (log-odds with the word minus "
            "without it); null for words before the explained window",
            examples=[{"negative": -2.5, "neutral": -1.1, "positive": 2.5}],
        ),
    ]


class ExplanationOut(TypedDict):
    prediction: PredictionOut
    words: Annotated[list[WordWeightOut], Field(description="every word the model scored, in order")]
    explained_tokens: Annotated[int, Field(description="how many of the last words carry weights", examples=[14])]
    capped: Annotated[
        bool,
        Field(
            description="the text had more words than SENTIMENT_MAX_EXPLAIN_TOKENS; earlier words have null weights",
            examples=[False],
        ),
    ]


class ExplainResponse(TypedDict):
    model: ModelRef
    method: Annotated[str, Field(description="how weights were computed", examples=["occlusion"])]
    explanations: list[ExplanationOut]


class ErrorDetail(TypedDict):
    field: Annotated[str | None, Field(description="where in the request body, e.g. texts[3]", examples=["texts"])]
    message: Annotated[str, Field(examples=["List should have at most 64 items after validation, not 65"])]


class ErrorBody(TypedDict):
    code: Annotated[str, Field(examples=["validation_error"])]
    message: Annotated[str, Field(examples=["texts: List should have at most 64 items after validation, not 65"])]
    details: list[ErrorDetail]
    request_id: Annotated[str | None, Field(examples=["5f0c6a8e4b7d4e2f9a1b3c5d7e9f1a2b"])]


class ErrorResponse(TypedDict):
    error: ErrorBody


class ModelInfo(TypedDict):
    name: str
    version: str
    base: NotRequired[BaseRef]
    labels: list[str]
    languages: Annotated[list[str], Field(description="ISO 639-1 codes of the languages the model supports")]
    max_tokens: int
    truncation: dict[str, str]
    provider: Annotated[
        str, Field(description="the onnxruntime execution provider in use", examples=["CPUExecutionProvider"])
    ]
    sha256: Annotated[str, Field(description="sha256 of model.onnx")]
    metrics: Annotated[dict[str, Any], Field(description="test metrics from the model card")]
    architecture: dict[str, Any]
    processes: NotRequired[ProcessCount]
    limits: Annotated[
        dict[str, int],
        Field(
            description="this server's input limits (clients split batches by them)",
            examples=[{"max_client_batch": 64, "max_text_chars": 100000}],
        ),
    ]


class ProcessCount(TypedDict):
    configured: Annotated[int, Field(description="SENTIMENT_PROCESSES", examples=[2])]
    serving: Annotated[int, Field(description="processes that answered the supervisor as ready", examples=[2])]


class Health(TypedDict):
    status: Annotated[str, Field(examples=["ok"])]
    processes: NotRequired[Annotated[ProcessCount, Field(description="with several processes: how many serve")]]


def model_ref(predictor: Predictor) -> ModelRef:
    ref: ModelRef = {"name": predictor.name, "version": predictor.version}
    if predictor.card.base:
        ref["base"] = {"name": predictor.card.base["name"], "version": predictor.card.base["version"]}
    return ref


def language_out(language: Language | None) -> LanguageOut:
    if language is None:
        return {"code": None, "supported": True}
    return {"code": language.code, "supported": language.supported}


def prediction_out(p: Prediction) -> PredictionOut:
    return {
        "label": p.label,
        "score": p.score,
        "probabilities": p.probabilities,
        "tokens": p.tokens,
        "truncated": p.truncated,
        "language": language_out(p.language),
    }


def predict_response(predictor: Predictor, predictions: list[Prediction]) -> PredictResponse:
    return {"model": model_ref(predictor), "predictions": [prediction_out(p) for p in predictions]}


def explain_response(predictor: Predictor, explanations: list[Explanation]) -> ExplainResponse:
    return {
        "model": model_ref(predictor),
        "method": "occlusion",
        "explanations": [
            {
                "prediction": prediction_out(e.prediction),
                "words": [{"text": w.text, "start": w.start, "end": w.end, "weights": w.weights} for w in e.words],
                "explained_tokens": e.explained_tokens,
                "capped": e.capped,
            }
            for e in explanations
        ],
    }


def model_info(predictor: Predictor, settings: Settings, processes: ProcessCount | None = None) -> ModelInfo:
    card, ref = predictor.card, model_ref(predictor)
    info: ModelInfo = {
        "name": ref["name"],
        "version": ref["version"],
        "labels": list(predictor.labels),
        "languages": list(predictor.languages),
        "max_tokens": predictor.max_tokens,
        "truncation": card.truncation,
        "provider": predictor.provider,
        "sha256": predictor.model_sha256,
        "metrics": card.metrics,
        "architecture": card.architecture,
        "limits": {
            "max_client_batch": settings.max_client_batch,
            "max_text_chars": settings.max_text_chars,
            "max_explain_texts": settings.max_explain_texts,
            "max_explain_tokens": settings.max_explain_tokens,
            "max_body_bytes": settings.max_body_bytes,
            "max_documents": settings.max_documents,
            "max_document_chars": settings.max_document_chars,
            "max_sentences": settings.max_sentences,
        },
    }
    if "base" in ref:
        info["base"] = ref["base"]
    if processes is not None:
        info["processes"] = processes
    return info
