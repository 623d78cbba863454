"""What training minimises and how it picks its best epoch: the classifier loss (per-source weights,
adversarial embedding perturbation) and the per-source validation score."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.model import BiLSTMClassifier


def validation_record(logits: torch.Tensor, labels: torch.Tensor, sources: list[str]) -> dict[str, Any]:
    """Loss and accuracy overall and per source; ``selection`` (mean of per-source accuracies) picks the
    best epoch, so the 768 Rotten Tomatoes sentences count as much as the 2,241 IMDB reviews."""
    correct = logits.argmax(1) == labels
    by_source = {}
    for source in sorted(set(sources)):
        rows = torch.tensor([s == source for s in sources])
        by_source[source or "all"] = correct[rows].float().mean().item()
    return {
        "val_loss": nn.functional.cross_entropy(logits, labels).item(),
        "val_accuracy": correct.float().mean().item(),
        "val_accuracy_by_source": by_source,
        "selection": sum(by_source.values()) / len(by_source),
    }


def adversarial_loss(
    model: BiLSTMClassifier,
    ids: torch.Tensor,
    lens: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    eps: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The weighted classifier loss, plus the same at embeddings pushed eps per token along its gradient
    (Miyato et al. 2017; ``eps`` 0: the clean loss alone)."""

    def loss_at(embedded: torch.Tensor) -> torch.Tensor:
        per_text = nn.functional.cross_entropy(
            model.classify_embedded(embedded, lens), targets, reduction="none", label_smoothing=label_smoothing
        )
        return (per_text * weights).sum() / weights.sum()

    embedded = model.embedding(ids)  # (B, T, E)
    loss = loss_at(embedded)
    if eps <= 0:
        return loss
    (grad,) = torch.autograd.grad(loss, embedded, retain_graph=True)
    norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]  # (B, 1, 1)
    scale = eps * lens.clamp(min=1).to(grad.dtype).sqrt()[:, None, None]  # eps per token on average
    return loss + loss_at(embedded + (scale * grad / norm).detach())


def source_weights(sources: list[str], power: float = 1.0) -> torch.Tensor:
    """Per text: (its source's size)^-power, scaled to a mean of 1. ``power`` 1: every source weighs the
    same in a mean; 0: every text does; between: the larger sources count for less than their size."""
    counts = {s: sources.count(s) for s in set(sources)}
    weights = torch.tensor([float(counts[s]) ** -power for s in sources])
    return weights * len(weights) / weights.sum()
