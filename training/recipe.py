"""The parts of the training recipe beyond plain supervised steps: sentence spans of long reviews,
adversarial embedding perturbation, per-source validation, and temperature scaling."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.batching import predict_logits
from training.model import BiLSTMClassifier

log = logging.getLogger(__name__)


SPAN_MIN_SOURCE_TOKENS = 60  # only texts longer than this give sentence spans
SPAN_MAX_TOKENS = 100
SENTENCE_ENDS = (".", "!", "?")


class SpanSampler:
    """Random runs of 1-3 consecutive sentences of the long training texts, as token-id lists."""

    def __init__(self, tokenizer: Any, ids: list[list[int]], labels: list[int]) -> None:
        end_ids = {tokenizer.token_to_id(t) for t in SENTENCE_ENDS} - {None}
        self.items = []  # (text index, sentence start positions, sentence end positions)
        for i, x in enumerate(ids):
            if len(x) > SPAN_MIN_SOURCE_TOKENS:
                ends = [p + 1 for p, t in enumerate(x) if t in end_ids]
                if not ends or ends[-1] != len(x):
                    ends.append(len(x))
                self.items.append((i, [0, *ends[:-1]], ends))
        self.ids, self.labels = ids, labels

    def sample(self, fraction: float, rng: random.Random) -> tuple[list[list[int]], list[int], list[int]]:
        """Spans of about ``fraction`` of the long texts: (token ids, labels, index of the text each came from)."""
        chosen = [item for item in self.items if rng.random() < fraction]
        spans, labels, parents = [], [], []
        for i, starts, ends in chosen:
            first = rng.randrange(len(starts))
            last = min(len(ends) - 1, first + rng.choice((0, 0, 1, 2)))
            begin, stop = starts[first], min(ends[last], starts[first] + SPAN_MAX_TOKENS)
            if stop - begin >= 2:
                spans.append(self.ids[i][begin:stop])
                labels.append(self.labels[i])
                parents.append(i)
        return spans, labels, parents


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[float, float]:
    """Temperature scaling (Guo et al. 2017) with the temperature a function of the text's length:
    T(L) = exp(a + b ln L), (a, b) minimising the validation log loss of softmax(logits / T(L)). One T for
    every text (b = 0) is the special case; a short sentence and an 800-token review are not equally
    over-confident, so the fit may tilt it. Per text, so batch invariance is untouched. ``weights`` (per
    text) make each source count equally, whatever its size."""
    weights = torch.ones(len(labels)) if weights is None else weights
    log_length = lengths.clamp(min=1).to(logits.dtype).log()[:, None]  # (N, 1)
    raw = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.LBFGS([raw], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def bounded() -> tuple[torch.Tensor, torch.Tensor]:
        # a in (-3, 3), b in (-1, 1): a flat loss (an untrained network) cannot send the search to infinity
        return 3 * raw[0].tanh(), raw[1].tanh()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scale, slope = bounded()
        scaled = logits / (scale + slope * log_length).exp()
        loss = (nn.functional.cross_entropy(scaled, labels, reduction="none") * weights).sum() / weights.sum()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # torch leaves LBFGS.step untyped
    scale, slope = bounded()
    return float(scale.item()), float(slope.item())


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
    loss_fn: nn.Module,
    eps: float,
) -> torch.Tensor:
    """Clean loss plus the loss at embeddings pushed eps per token along the loss gradient."""
    embedded = model.embedding(ids)  # (B, T, E)
    loss = loss_fn(model.classify_embedded(embedded, lens), targets)
    if eps <= 0:
        return loss  # type: ignore[no-any-return]  # nn.Module.__call__ is untyped
    (grad,) = torch.autograd.grad(loss, embedded, retain_graph=True)
    norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]  # (B, 1, 1)
    scale = eps * lens.clamp(min=1).to(grad.dtype).sqrt()[:, None, None]  # eps per token on average
    perturbed = embedded + (scale * grad / norm).detach()
    adversarial: torch.Tensor = loss_fn(model.classify_embedded(perturbed, lens), targets)
    return loss + adversarial  # type: ignore[no-any-return]  # nn.Module.__call__ is untyped


def source_weights(sources: list[str]) -> torch.Tensor:
    """Per text: 1 / (its source's size), so that every source weighs the same in a mean."""
    counts = {s: sources.count(s) for s in set(sources)}
    return torch.tensor([1.0 / counts[s] for s in sources])


def calibrate(
    best_path: Path,
    model: BiLSTMClassifier,
    val_ids: list[list[int]],
    val_labels: torch.Tensor,
    val_sources: list[str],
    device: torch.device,
) -> dict[str, Any]:
    """Fit the temperature on the validation split and store it in the best checkpoint (export puts it in
    the graph, so the served probabilities are the calibrated ones)."""
    state = torch.load(best_path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    logits = predict_logits(model, val_ids, device)
    lengths = torch.tensor([len(x) for x in val_ids])
    scale, slope = fit_temperature(logits, val_labels, lengths, source_weights(val_sources))
    state["temperature"] = {"log_scale": scale, "log_slope": slope}
    torch.save(state, best_path)
    temperature = (scale + slope * lengths.clamp(min=1).float().log()).exp()[:, None]
    before = nn.functional.cross_entropy(logits, val_labels).item()
    after = nn.functional.cross_entropy(logits / temperature, val_labels).item()
    log.info("temperature exp(%.3f + %.3f ln L): validation log loss %.4f -> %.4f", scale, slope, before, after)
    return {
        "temperature": {"log_scale": scale, "log_slope": slope},
        "val_log_loss_before_temperature": before,
        "val_log_loss_after_temperature": after,
    }
