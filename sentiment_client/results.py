"""What the service answers, as typed results (the client builds them from the JSON bodies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    probabilities: dict[str, float]
    tokens: int
    truncated: bool


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


def prediction_from(data: dict[str, Any]) -> Prediction:
    return Prediction(data["label"], data["score"], data["probabilities"], data["tokens"], data["truncated"])


def explanation_from(data: dict[str, Any]) -> Explanation:
    words = [WordWeight(w["text"], w["start"], w["end"], w["weights"]) for w in data["words"]]
    return Explanation(prediction_from(data["prediction"]), words, data["explained_tokens"], data["capped"])
