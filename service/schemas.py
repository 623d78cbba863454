"""Request and response bodies. Input limits come from the settings, so the OpenAPI schema shows them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

REVIEW_EXAMPLE = "A moving, beautifully shot film with a terrific cast. I loved every minute of it."


# "Not only white space", with JSON Schema's (ECMA-262) idea of white space, so that the published pattern
# and the server agree on every string (Python's str.isspace also counts e.g. U+001C..U+001F).
NOT_ONLY_WHITESPACE = r"[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NOT_ONLY_WHITESPACE = re.compile(NOT_ONLY_WHITESPACE)


def _check_text(value: str) -> str:
    # Unpaired surrogates never get here: pydantic refuses them as "not a valid string".
    if not _NOT_ONLY_WHITESPACE.search(value):
        raise ValueError("must contain at least one non-whitespace character")
    return value


def _exactly_one_in_schema(schema: dict[str, Any]) -> None:
    """Publish the real contract: exactly one of the two fields, neither of them null."""
    for name in ("text", "texts"):
        prop = schema["properties"][name]
        prop.pop("default", None)
        non_null = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
        prop.update(non_null[0])
    schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]


class _PredictRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_exactly_one_in_schema)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> _PredictRequestBase:
        text, texts = getattr(self, "text", None), getattr(self, "texts", None)
        if (text is None) == (texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def all_texts(self) -> list[str]:
        text: str | None = getattr(self, "text", None)
        return [text] if text is not None else list(getattr(self, "texts", []))


def make_predict_request(max_client_batch: int, max_text_chars: int, name: str = "PredictRequest") -> type[
        _PredictRequestBase]:
    """The request model for the configured limits (texts per request, characters per text)."""
    text_type = Annotated[str, StringConstraints(max_length=max_text_chars), AfterValidator(_check_text),
                          Field(json_schema_extra={"pattern": NOT_ONLY_WHITESPACE})]
    return create_model(
        name,
        __base__=_PredictRequestBase,
        text=(text_type | None, Field(None, description=f"one text, at most {max_text_chars:,} characters",
                                      examples=[REVIEW_EXAMPLE])),
        texts=(list[text_type] | None, Field(None, min_length=1, max_length=max_client_batch,
                                             description=f"1 to {max_client_batch} texts, at most "
                                             f"{max_text_chars:,} characters each",
                                             examples=[[REVIEW_EXAMPLE, "Dull, predictable and far too long."]])),
        __doc__="Give exactly one of `text` or `texts`. Predictions come back in input order.",
    )


class ModelRef(BaseModel):
    name: str = Field(examples=["imdb-bilstm"])
    version: str = Field(examples=["1.0.0"])


class PredictionOut(BaseModel):
    label: str = Field(description="the most probable label", examples=["positive"])
    score: float = Field(description="probability of `label`", examples=[0.97])
    probabilities: dict[str, float] = Field(description="one probability per label; they sum to 1",
                                            examples=[{"negative": 0.03, "positive": 0.97}])
    tokens: int = Field(description="tokens the model scored (after truncation)", examples=[182])
    truncated: bool = Field(description="the text was longer than the model's max tokens and was cut",
                            examples=[False])


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


class WordWeightOut(BaseModel):
    text: str = Field(description="the word as written in the input: input[start:end]", examples=["wonderful"])
    start: int = Field(description="character offset of the word in the input text", examples=[37])
    end: int = Field(examples=[46])
    weights: dict[str, float] | None = Field(
        description="per label: how much this word raised that label's log-odds (log-odds with the word minus "
                    "without it); null for words before the explained window", examples=[{"negative": -13.5,
                                                                                          "positive": 13.5}])


class ExplanationOut(BaseModel):
    prediction: PredictionOut
    words: list[WordWeightOut] = Field(description="every token the model scored, in order")
    explained_tokens: int = Field(description="how many of the last tokens carry weights", examples=[14])
    capped: bool = Field(description="the text had more tokens than SENTIMENT_MAX_EXPLAIN_TOKENS; earlier words "
                                     "have null weights", examples=[False])


class ExplainResponse(BaseModel):
    model: ModelRef
    method: str = Field(description="how weights were computed", examples=["occlusion"])
    explanations: list[ExplanationOut]


class ErrorDetail(BaseModel):
    field: str | None = Field(None, description="where in the request body, e.g. texts[3]", examples=["texts"])
    message: str = Field(examples=["List should have at most 64 items after validation, not 65"])


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str = Field(examples=["texts: List should have at most 64 items after validation, not 65"])
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = Field(None, examples=["5f0c6a8e4b7d4e2f9a1b3c5d7e9f1a2b"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelInfo(BaseModel):
    name: str
    version: str
    labels: list[str]
    max_tokens: int
    truncation: dict[str, Any]
    provider: str = Field(description="the onnxruntime execution provider in use", examples=["CPUExecutionProvider"])
    sha256: str = Field(description="sha256 of model.onnx")
    metrics: dict[str, Any] = Field(description="test metrics from the model card")
    architecture: dict[str, Any]
    limits: dict[str, int] = Field(description="this server's input limits (clients split batches by them)",
                                   examples=[{"max_client_batch": 64, "max_text_chars": 100000}])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
