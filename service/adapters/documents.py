"""``POST /analyze``: documents read sentence by sentence, with a verdict per document.

A body is ``{"documents": ["...", ...]}`` or ``{"text": "..."}``. Each document is checked on its own: one
that cannot be scored (empty, longer than SENTIMENT_MAX_DOCUMENT_CHARS, more sentences than
SENTIMENT_MAX_SENTENCES, or in a language the model does not support when the server refuses those) gets its
own ``error`` in the 200 answer and the others are scored; a request that is wrong as a whole (not JSON, no
documents, too many, a document that is not a string, more sentences than SENTIMENT_MAX_SENTENCES in all) is
a 422 like every other. The sentences of all documents go
to the engine as one job on its own lane, costed by their tokens like ``/predict``'s texts and known before
it queues, worked off in slices that give way to ``/predict``'s requests (``service.batcher``); the document
verdict is ``model_runtime.documents.document_verdict``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response

from model_runtime import (
    Language,
    Prediction,
    Predictor,
    document_sentences,
    document_verdict,
    model_reads,
    read_back,
)
from service.adapters.documents_schema import AnalyzeResponse, DocumentOut
from service.config import Settings
from service.engine import Engine
from service.errors import check_json_media_type, json_response, ours
from service.lifecycle import Scoring
from service.schemas import language_out, model_ref
from service.validation import (
    InvalidInput,
    TextLimits,
    check_count,
    check_language,
    json_object,
    json_type,
    one_field,
)

FIELDS = {"documents": "an array of strings", "text": "a string"}


@dataclass(frozen=True)
class ReadDocument:
    """A document as read before scoring: its sentences (offset, length) and language, or why it cannot be
    scored."""

    text: str
    sentences: list[tuple[int, int]]
    language: Language | None
    error: tuple[str, str] | None = None  # (code, message)


def read_documents(body: bytes, headers: Headers, settings: Settings, engine: Engine) -> list[ReadDocument]:
    check_json_media_type(headers)
    data = json_object(body)
    field = one_field(data, FIELDS)
    values = [data["text"]] if field == "text" else data["documents"]
    if not isinstance(values, list):
        raise InvalidInput(field, f"must be an array of strings, not {json_type(values)}")
    check_count(len(values), field, TextLimits(settings.max_documents, settings.max_document_chars), "documents")
    documents = []
    for i, value in enumerate(values):
        where = field if field == "text" else f"documents[{i}]"
        if not isinstance(value, str):
            raise InvalidInput(where, f"must be a string, not {json_type(value)}")
        documents.append(_read(value, where, settings, engine))
    total = sum(len(d.sentences) for d in documents)
    if total > settings.max_sentences:
        raise InvalidInput(
            field, f"holds {total:,} sentences in all; the limit is {settings.max_sentences:,} per request"
        )
    return documents


def _read(text: str, where: str, settings: Settings, engine: Engine) -> ReadDocument:
    if len(text) > settings.max_document_chars:
        message = f"{where} has {len(text):,} characters; the limit is {settings.max_document_chars:,}"
        return ReadDocument(text, [], None, ("document_too_long", message))
    sentences = document_sentences(text)
    if not sentences:
        return ReadDocument(text, [], None, ("empty_document", f"{where} has no sentence to score"))
    if len(sentences) > settings.max_sentences:
        message = f"{where} has {len(sentences):,} sentences; the limit is {settings.max_sentences:,}"
        return ReadDocument(text, [], None, ("too_many_sentences", message))
    language = engine.language(text)
    if settings.unsupported_language == "refuse":
        try:
            check_language(language, where)
        except InvalidInput as exc:
            return ReadDocument(text, [], language, ("unsupported_language", str(exc)))
    return ReadDocument(text, sentences, language)


def analyzed(
    predictor: Predictor, predictions: list[Prediction], documents: list[ReadDocument], mixed_threshold: float
) -> AnalyzeResponse:
    """Each document's answer from ``predictions``: every scored document's sentences, in order, then each
    scored document of several sentences whole, in order (``texts_of``)."""
    out: list[DocumentOut] = []
    scored = [d for d in documents if d.error is None]
    read = iter(read_back(predictions, [(d.text, d.sentences) for d in scored]))
    for index, document in enumerate(documents):
        entry: DocumentOut = {"index": index}
        if document.language is not None:
            entry["language"] = language_out(document.language)
        if document.error is not None:
            code, message = document.error
            entry["error"] = {"code": code, "message": message}
            out.append(entry)
            continue
        mine, whole = next(read)
        label, probabilities = document_verdict(mine, predictor.labels, mixed_threshold, whole)
        entry["label"], entry["probabilities"] = label, probabilities
        entry["sentences"] = [
            {
                "offset": offset,
                "length": length,
                "text": document.text[offset : offset + length],
                "label": p.label,
                "probabilities": p.probabilities,
            }
            for (offset, length), p in zip(document.sentences, mine, strict=True)
        ]
        out.append(entry)
    return {"model": model_ref(predictor), "documents": out}


def texts_of(documents: list[ReadDocument]) -> list[str]:
    """What the model reads of the documents that can be scored (``model_runtime.documents.model_reads``)."""
    return model_reads([(d.text, d.sentences) for d in documents if d.error is None])


def scoring_routes(settings: Settings, engine: Engine) -> dict[tuple[str, str], Scoring]:
    def parse(body: bytes, headers: Headers, _: dict[str, str]) -> tuple[list[str], list[ReadDocument]]:
        documents = read_documents(body, headers, settings, engine)
        return texts_of(documents), documents

    def answer(result: tuple[Predictor, list[Prediction]], documents: list[ReadDocument]) -> Response:
        engine.metrics.count_languages(d.language for d in documents if d.error is None and d.language)
        return json_response(analyzed(*result, documents, settings.mixed_threshold))

    # A document's language is read whole (in parse); its sentences' are not asked for.
    return {("POST", "/analyze"): Scoring("analyze", ours, 422, parse, answer, languages=False)}
