"""Results of texts and documents as plain data (what a job's results hold), and ``BatchScorer``: a batch of
rows given as columns scored by one loaded model, the unit of work that Ray Data's ``map_batches`` hands its
actors (``python -m sentiment_bulk --engine ray`` and the service's jobs with ``SENTIMENT_JOBS_ENGINE=ray``).

A text's result: ``label``, ``score``, ``probabilities``, ``language``. A document's: its verdict (``label``,
``mixed`` included, and ``probabilities``), its ``language`` (read whole) and its ``sentences`` (offset,
length, label, probabilities). The same functions make them wherever the model ran, so a job scored by the
service's engine and one scored on Ray hold the same results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model_runtime.documents import MIXED_THRESHOLD, document_verdict, model_reads, read_back
from model_runtime.language import Language
from model_runtime.predictor import Prediction, Predictor
from model_runtime.texts import document_sentences

MAX_BATCH_TOKENS = 4096


def language_result(language: Language | None) -> dict[str, Any] | None:
    return None if language is None else {"code": language.code, "supported": language.supported}


def text_result(prediction: Prediction) -> dict[str, Any]:
    return {
        "label": prediction.label,
        "score": prediction.score,
        "probabilities": prediction.probabilities,
        "language": language_result(prediction.language),
    }


def document_result(
    spans: Sequence[tuple[int, int]],
    predictions: Sequence[Prediction],
    labels: tuple[str, ...],
    language: Language,
    mixed_threshold: float = MIXED_THRESHOLD,
    whole: Prediction | None = None,
) -> dict[str, Any]:
    """A document's result from its sentences' predictions and, when given, the whole document's."""
    label, probabilities = document_verdict(predictions, labels, mixed_threshold, whole)
    return {
        "label": label,
        "probabilities": probabilities,
        "language": language_result(language),
        "sentences": [
            {"offset": a, "length": n, "label": p.label, "probabilities": p.probabilities}
            for (a, n), p in zip(spans, predictions, strict=True)
        ],
    }


def score_documents(
    predictor: Predictor, texts: Sequence[str], max_sentences: int, mixed_threshold: float = MIXED_THRESHOLD
) -> list[dict[str, Any]]:
    """Each text read as a document: its result, or its ``error`` when it has more sentences than allowed."""
    spans = [document_sentences(text) for text in texts]
    kept = [i for i, s in enumerate(spans) if len(s) <= max_sentences]
    documents = [(texts[i], spans[i]) for i in kept]
    read = model_reads(documents)
    predictions = predictor.predict(read, MAX_BATCH_TOKENS, languages=[False] * len(read)) if read else []
    results: list[dict[str, Any]] = [
        {"error": f"has {len(s):,} sentences; the limit is {max_sentences:,}"} for s in spans
    ]
    for i, (mine, whole) in zip(kept, read_back(predictions, documents), strict=True):
        language = predictor.language(texts[i])
        results[i] = document_result(spans[i], mine, predictor.labels, language, mixed_threshold, whole)
    return results


class BatchScorer:
    """One model, loaded once (a Ray actor's life), scoring batches of rows given as columns: ``text`` in,
    ``result`` out (each row's result as JSON), every other column passed through."""

    def __init__(
        self,
        model_dir: str | Path,
        provider: str = "cpu",
        task: str = "predict",
        max_sentences: int = 1024,
        mixed_threshold: float = MIXED_THRESHOLD,
        text_column: str = "text",
    ) -> None:
        # one CPU per actor, so one onnxruntime thread each
        self.predictor = Predictor.load(Path(model_dir), provider=provider, intra_op_threads=1)  # type: ignore[arg-type]
        self.task, self.max_sentences, self.mixed_threshold = task, max_sentences, mixed_threshold
        self.text_column = text_column

    def score(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if self.task == "analyze":
            return score_documents(self.predictor, texts, self.max_sentences, self.mixed_threshold)
        return [text_result(p) for p in self.predictor.predict(list(texts), MAX_BATCH_TOKENS)]

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        results = self.score([str(t) for t in batch[self.text_column]])
        return {**batch, "result": np.array([json.dumps(r) for r in results], dtype=object)}
