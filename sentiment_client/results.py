"""What the service answers, as typed results (the client builds them from the JSON bodies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Language:
    code: str | None  # ISO 639-1; None when the text is too short to tell
    supported: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    probabilities: dict[str, float]
    tokens: int
    truncated: bool
    language: Language | None = None  # None from a server older than the language check


@dataclass(frozen=True, slots=True)
class Sentence:
    offset: int  # in Unicode code points: document[offset:offset + length]
    length: int
    text: str
    label: str
    probabilities: dict[str, float]


@dataclass(frozen=True, slots=True)
class DocumentError:
    code: str  # empty_document, document_too_long, unsupported_language
    message: str


@dataclass(frozen=True, slots=True)
class Document:
    """One document of ``analyze``: its verdict (a label of the model, or ``mixed``) and its sentences, or
    the error that kept it from being scored."""

    index: int
    label: str | None
    probabilities: dict[str, float]
    language: Language | None
    sentences: list[Sentence]
    error: DocumentError | None = None


@dataclass(frozen=True, slots=True)
class WordWeight:
    text: str
    start: int
    end: int
    weights: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class Explanation:
    prediction: Prediction
    words: list[WordWeight]
    explained_tokens: int
    capped: bool


def language_from(data: dict[str, Any] | None) -> Language | None:
    return None if data is None else Language(data["code"], data["supported"])


def prediction_from(data: dict[str, Any]) -> Prediction:
    return Prediction(
        data["label"],
        data["score"],
        data["probabilities"],
        data["tokens"],
        data["truncated"],
        language_from(data.get("language")),
    )


def document_from(data: dict[str, Any], first_index: int = 0) -> Document:
    """A document of an /analyze answer; ``first_index`` is where its request's documents start."""
    error = data.get("error")
    return Document(
        index=first_index + data["index"],
        label=data.get("label"),
        probabilities=data.get("probabilities", {}),
        language=language_from(data.get("language")),
        sentences=[
            Sentence(s["offset"], s["length"], s["text"], s["label"], s["probabilities"])
            for s in data.get("sentences", [])
        ],
        error=DocumentError(error["code"], error["message"]) if error else None,
    )


def explanation_from(data: dict[str, Any]) -> Explanation:
    words = [WordWeight(w["text"], w["start"], w["end"], w["weights"]) for w in data["words"]]
    return Explanation(prediction_from(data["prediction"]), words, data["explained_tokens"], data["capped"])
