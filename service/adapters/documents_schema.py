"""What ``POST /analyze`` promises, for the OpenAPI document and for building its answers: the request model
for the configured limits and the answer's typed shapes."""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import Field, create_model
from typing_extensions import TypedDict

from service.schemas import PROBABILITIES_EXAMPLE, LanguageOut, ModelRef, PredictRequestBase

DOCUMENT_EXAMPLE = "The staff were friendly. The room was dirty and the wifi never worked."


def make_analyze_request(max_documents: int, max_document_chars: int) -> type[PredictRequestBase]:
    """The /analyze request model. A document that cannot be scored (empty, too long) is that document's
    error in a 200 answer, so the schema leaves the strings themselves open."""
    return create_model(
        "AnalyzeRequest",
        __base__=PredictRequestBase,
        text=(str | None, Field(None, description="one document", examples=[DOCUMENT_EXAMPLE])),
        documents=(
            list[str] | None,
            Field(
                None,
                min_length=1,
                max_length=max_documents,
                description=f"1 to {max_documents} documents; one longer than {max_document_chars:,} characters, or "
                "with no sentence, comes back as that document's error",
                examples=[[DOCUMENT_EXAMPLE, "Das Essen war kalt."]],
            ),
        ),
        __doc__="Give exactly one of `text` or `documents`, neither null. Documents come back in input order, "
        "each read sentence by sentence.",
    )


class SentenceOut(TypedDict):
    offset: Annotated[
        int,
        Field(description="where the sentence starts in the document, in Unicode code points", examples=[0]),
    ]
    length: Annotated[
        int, Field(description="its length in code points: document[offset:offset+length]", examples=[24])
    ]
    text: Annotated[str, Field(description="the sentence as written", examples=["The staff were friendly."])]
    label: Annotated[str, Field(examples=["positive"])]
    probabilities: Annotated[dict[str, float], Field(examples=[PROBABILITIES_EXAMPLE])]


class DocumentError(TypedDict):
    code: Annotated[
        str,
        Field(
            examples=["empty_document"],
            description="empty_document, document_too_long, too_many_sentences or unsupported_language",
        ),
    ]
    message: Annotated[str, Field(examples=["documents[1] has no sentence to score"])]


class DocumentOut(TypedDict):
    index: Annotated[int, Field(description="the document's place in the request", examples=[0])]
    label: NotRequired[
        Annotated[
            str,
            Field(
                description="the document's verdict: one of the model's labels, or mixed (one sentence sure of "
                "positive and another of negative)",
                examples=["mixed"],
            ),
        ]
    ]
    probabilities: NotRequired[
        Annotated[
            dict[str, float],
            Field(description="the sentences' probabilities, weighed by their tokens and how much opinion they carry"),
        ]
    ]
    language: NotRequired[LanguageOut]
    sentences: NotRequired[list[SentenceOut]]
    error: NotRequired[Annotated[DocumentError, Field(description="why this document was not scored")]]


class AnalyzeResponse(TypedDict):
    model: ModelRef
    documents: list[DocumentOut]
