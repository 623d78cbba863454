"""What training minimises and how it picks its best epoch: the classifier loss (per-source weights,
adversarial embedding perturbation) over what each text's label says, and the per-source validation score.

A label says one of three things (``Supervision``), and the loss of a text is its negative log-likelihood of
exactly that, ``logsumexp(logits[compared]) - logsumexp(logits[allowed])``:

- ``full``: the text is this class (allowed {y}, compared with every class): plain cross-entropy;
- ``polarity``: it leans this way rather than the other (allowed {y}, compared with {negative, positive}):
  a binary source's label (a sentence of a fresh review) teaches polarity without teaching that nothing is
  neutral; the neutral logit gets no gradient from it;
- ``or_neutral``: this class or neutral, not the opposite (allowed {y, neutral}): "not bad" is positive or
  neutral, never negative.

With labels that have no neutral (a user's binary file) every kind is plain cross-entropy.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn

from training.model import BiLSTMClassifier

FULL, POLARITY, OR_NEUTRAL = "full", "polarity", "or_neutral"


def label_masks(labels: tuple[str, ...], targets: torch.Tensor, kinds: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed, compared): (N, C) boolean masks of what each text's label says (module docstring)."""
    n, classes = len(targets), len(labels)
    allowed = nn.functional.one_hot(targets, classes).bool()
    compared = torch.ones(n, classes, dtype=torch.bool)
    if "neutral" in labels and {"negative", "positive"} <= set(labels):
        neutral, polar = labels.index("neutral"), [labels.index("negative"), labels.index("positive")]
        polarity = torch.tensor([k == POLARITY for k in kinds])
        or_neutral = torch.tensor([k == OR_NEUTRAL for k in kinds])
        compared[polarity] = False
        compared[polarity.nonzero()[:, :1], torch.tensor(polar)] = True
        allowed[or_neutral, neutral] = True
    return allowed, compared


def label_set_nll(logits: torch.Tensor, allowed: torch.Tensor, compared: torch.Tensor) -> torch.Tensor:
    """Per text (N,): -log( sum of p over allowed / sum of p over compared ) from logits (N, C)."""
    return _masked_logsumexp(logits, compared) - _masked_logsumexp(logits, allowed)


def _masked_logsumexp(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~mask, float("-inf")).logsumexp(dim=1)


def source_kinds(sources: list[str], supervision: dict[str, str]) -> list[str]:
    return [supervision.get(s, FULL) for s in sources]


def validation_record(
    logits: torch.Tensor, labels: torch.Tensor, sources: list[str], names: tuple[str, ...], kinds: list[str]
) -> dict[str, Any]:
    """Loss and accuracy overall and per source; ``selection`` (the mean over sources) picks the best epoch,
    so the 768 Rotten Tomatoes sentences count as much as the 2,241 IMDB reviews. A source whose labels
    say polarity only is scored on polarity (negative against positive); the others on every class."""
    correct = logits.argmax(1) == labels
    if {"negative", "positive"} <= set(names):
        polar = torch.tensor([names.index("negative"), names.index("positive")])
        leaning = polar[logits[:, polar].argmax(1)] == labels
        correct = torch.where(torch.tensor([k == POLARITY for k in kinds]), leaning, correct)
    by_source = {}
    for source in sorted(set(sources)):
        rows = torch.tensor([s == source for s in sources])
        by_source[source or "all"] = correct[rows].float().mean().item()
    allowed, compared = label_masks(names, labels, kinds)
    return {
        "val_loss": label_set_nll(logits, allowed, compared).mean().item(),
        "val_accuracy": correct.float().mean().item(),
        "val_accuracy_by_source": by_source,
        "selection": sum(by_source.values()) / len(by_source),
    }


def adversarial_loss(
    model: BiLSTMClassifier,
    ids: torch.Tensor,
    lens: torch.Tensor,
    masks: tuple[torch.Tensor, torch.Tensor],
    weights: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """The weighted classifier loss over each text's label set (``masks``: allowed, compared), plus the
    same at embeddings pushed eps per token along its gradient (Miyato et al. 2017; ``eps`` 0: the clean
    loss alone)."""

    def loss_at(embedded: torch.Tensor) -> torch.Tensor:
        per_text = label_set_nll(model.classify_embedded(embedded, lens), *masks)
        return (per_text * weights).sum() / weights.sum()

    embedded = model.embedding(ids)  # (B, T, E)
    loss = loss_at(embedded)
    if eps <= 0:
        return loss
    (grad,) = torch.autograd.grad(loss, embedded, retain_graph=True)
    norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]  # (B, 1, 1)
    scale = eps * lens.clamp(min=1).to(grad.dtype).sqrt()[:, None, None]  # eps per token on average
    return loss + loss_at(embedded + (scale * grad / norm).detach())


def source_weights(
    sources: list[str], power: float = 1.0, labels: list[int] | None = None, class_power: float = 1.0
) -> torch.Tensor:
    """Per text: (its source's size)^-power, scaled to a mean of 1. ``power`` 1: every source weighs the
    same in a mean; 0: every text does; between: the larger sources count for less than their size.

    With ``labels``, a text also weighs (its class's share of its source)^-class_power, renormalised within
    the source so that the source keeps its total weight; at ``class_power`` 1 every class of a source weighs
    the same: a source that is mostly negative (complaint tweets) is then no evidence of "negative"."""
    counts = Counter(sources)
    weights = torch.tensor([float(counts[s]) ** -power for s in sources])
    if labels is not None and class_power:
        by_class = Counter(zip(sources, labels, strict=True))
        raw = [(by_class[s, y] / counts[s]) ** -class_power for s, y in zip(sources, labels, strict=True)]
        total: Counter[str] = Counter()
        for s, w in zip(sources, raw, strict=True):
            total[s] += w
        balance = [w * counts[s] / total[s] for s, w in zip(sources, raw, strict=True)]
        weights = weights * torch.tensor(balance)
    return weights * len(weights) / weights.sum()
