"""A document's verdict from its sentences' predictions: one documented rule, whatever the model's labels.

- The document's probabilities are the mean of its sentences' probabilities and of the whole document's,
  each sentence weighing its tokens times the square of how much opinion it carries ((1 - P(neutral))^2; 1
  for a model without a neutral label), the whole document as much as all its sentences' tokens together
  (times its own opinion, squared): a review of eight plot sentences and two verdicts reads as its
  verdicts and as its arc, a document of plain statements reads neutral, and a long sentence counts more
  than a short one. (Sentences alone read 1,000 IMDB test reviews' polarity at 86% with model 5.0.0, the
  whole review at 94%: docs/documents.md.)
  A document of one sentence is that sentence: it is read once (``model_reads``).
- Its label is the most probable label of that mean, except ``mixed``: at least one sentence at least
  ``mixed_threshold`` sure of positive (the model's last polar label) and another as sure of negative.

The threshold was chosen by measurement on hand-written documents and the review test splits
(docs/documents.md, ``python -m bench.documents``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from model_runtime.predictor import Prediction

MIXED = "mixed"
MIXED_THRESHOLD = 0.9  # the service's default (SENTIMENT_MIXED_THRESHOLD); docs/documents.md
OPINION_POWER = 2  # how strongly a sentence's weight follows the opinion it carries (docs/documents.md)


def document_verdict(
    sentences: Sequence[Prediction],
    labels: tuple[str, ...],
    mixed_threshold: float,
    whole: Prediction | None = None,
) -> tuple[str, dict[str, float]]:
    """(label, probabilities) of a document from its sentences' predictions (at least one) and, when given,
    the prediction of the whole document, which weighs as much as all its sentences' tokens together."""
    negative, positive = polar_labels(labels)
    tokens = [max(p.tokens, 1) for p in sentences]
    scored = [*sentences, *([whole] if whole is not None else [])]
    sizes = [*tokens, *([sum(tokens)] if whole is not None else [])]
    weights = [
        size * (1.0 - p.probabilities.get("neutral", 0.0)) ** OPINION_POWER + 1e-6
        for size, p in zip(sizes, scored, strict=True)
    ]
    total = sum(weights)
    probabilities = {
        label: sum(w * p.probabilities[label] for w, p in zip(weights, scored, strict=True)) / total for label in labels
    }
    sure = {side: any(p.probabilities[side] >= mixed_threshold for p in sentences) for side in (negative, positive)}
    if sure[negative] and sure[positive]:
        return MIXED, probabilities
    return max(labels, key=probabilities.__getitem__), probabilities


def polar_labels(labels: tuple[str, ...]) -> tuple[str, str]:
    """The negative and positive labels: named so, or the first and the last."""
    if "negative" in labels and "positive" in labels:
        return "negative", "positive"
    return labels[0], labels[-1]


Spans = Sequence[tuple[int, int]]  # a document's sentences: (offset, length) each


def model_reads(documents: Sequence[tuple[str, Spans]]) -> list[str]:
    """What the model reads of these documents: every sentence, in order, then each document of more than
    one sentence whole, in order (a document of one sentence is that sentence)."""
    sentences = [text[a : a + n] for text, spans in documents for a, n in spans]
    return sentences + [text for text, spans in documents if len(spans) > 1]


def read_back(
    predictions: Sequence[Prediction], documents: Sequence[tuple[str, Spans]]
) -> Iterator[tuple[Sequence[Prediction], Prediction | None]]:
    """Per document, from the predictions of ``model_reads(documents)``: its sentences' and its whole's (None
    for a document of one sentence)."""
    wholes = iter(predictions[sum(len(spans) for _, spans in documents) :])
    position = 0
    for _, spans in documents:
        mine, position = predictions[position : position + len(spans)], position + len(spans)
        yield mine, next(wholes) if len(spans) > 1 else None
