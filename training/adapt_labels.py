"""What an adapted model answers: the user's labels. A file of two labels on a base with a neutral one gives
a model of those two (the head's neutral row taken out, the rest as trained; ``--keep-neutral`` keeps three),
and the base's own split, used for rehearsal and the forgetting check, loses its neutral texts with it; the
base's figures are then compared on what both models answer (its polarity)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_runtime import ModelCard
from model_runtime.contract import MODEL_FILE
from training.data import DataError, Example, Split
from training.export import model_from_onnx
from training.model import BiLSTMClassifier
from training.sources import split_from_record

log = logging.getLogger(__name__)


def base_data(card: ModelCard) -> Split | None:
    try:
        return split_from_record(card.data)
    except (DataError, KeyError, FileNotFoundError) as exc:
        log.warning("the base model's data cannot be rebuilt (%s): no rehearsal, no forgetting check", exc)
        return None


def without_neutral_examples(labels: tuple[str, ...], examples: list[Example]) -> list[Example]:
    """``examples`` but the neutral ones, renumbered for the labels without neutral."""
    keep = [name for name in labels if name != "neutral"]
    return [replace(ex, label=keep.index(labels[ex.label])) for ex in examples if labels[ex.label] != "neutral"]


def without_neutral(
    model: BiLSTMClassifier, labels: tuple[str, ...], examples: list[Example]
) -> tuple[BiLSTMClassifier, tuple[str, ...], list[Example]]:
    """The network answering every label but neutral (the head's neutral row taken out, the rest as trained),
    and the examples that are not neutral, their labels renumbered."""
    keep = [i for i, name in enumerate(labels) if name != "neutral"]
    head = nn.Linear(model.head.in_features, len(keep))
    with torch.no_grad():
        head.weight.copy_(model.head.weight[keep])
        head.bias.copy_(model.head.bias[keep])
    model.head, model.config = head, replace(model.config, num_classes=len(keep))
    return model, tuple(labels[i] for i in keep), without_neutral_examples(labels, examples)


def the_users_labels(
    base_card: ModelCard, base_dir: Path, examples: list[Example], keep_neutral: bool
) -> tuple[BiLSTMClassifier, tuple[str, ...], list[Example], Split | None]:
    """The base network, the labels it will answer, the user's examples and the base's own split (for
    rehearsal and the forgetting check), all in those labels: a file with two labels on a base with a neutral
    one gives a model of the file's two labels unless ``keep_neutral``."""
    labels = tuple(base_card.labels)
    model = model_from_onnx(base_dir / MODEL_FILE)
    original = base_data(base_card)
    two_labels = "neutral" in labels and all(labels[ex.label] != "neutral" for ex in examples)
    if not two_labels or keep_neutral:
        return model, labels, examples, original
    model, kept, examples = without_neutral(model, labels, examples)
    if original is not None:
        train, test = (without_neutral_examples(labels, part) for part in (original.train, original.test))
        original = replace(original, train=train, test=test)
    return model, kept, examples, original


def base_figures(base_card: ModelCard, labels: tuple[str, ...]) -> dict[str, Any]:
    """The base's own test figures per source, as the adapted model's are measured: on the same labels (a
    two-label model from a three-label base is measured on the polar texts, so the base's polarity)."""
    by_source: dict[str, Any] = base_card.metrics.get("test", {}).get("by_source", {})
    if tuple(base_card.labels) == labels:
        return by_source
    polar = {name: m for name, m in by_source.items() if "polarity_accuracy" in m}
    return {name: {**m, "accuracy": m["polarity_accuracy"]} for name, m in polar.items()}
