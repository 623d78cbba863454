"""Temperature scaling with a length-aware temperature, fitted on the validation split (Guo et al. 2017)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from training.batching import predict_logits
from training.model import BiLSTMClassifier
from training.objective import label_set_nll, source_weights

log = logging.getLogger(__name__)


def fit_temperature(
    logits: torch.Tensor,
    masks: tuple[torch.Tensor, torch.Tensor],
    lengths: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Temperature scaling (Guo et al. 2017) with the temperature a function of the text's length:
    T(L) = exp(a + b ln L), (a, b) minimising the validation log loss of softmax(logits / T(L)). One T for
    every text (b = 0) is the special case; a short sentence and an 800-token review are not equally
    over-confident, so the fit may tilt it. Per text, so batch invariance is untouched. ``masks`` (allowed,
    compared: ``training.objective.label_masks``) say what each label says; ``weights`` (per text) make each
    source count equally, whatever its size."""
    weights = torch.ones(len(logits)) if weights is None else weights
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
        loss = (label_set_nll(scaled, *masks) * weights).sum() / weights.sum()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # torch leaves LBFGS.step untyped
    scale, slope = bounded()
    return float(scale.item()), float(slope.item())


def calibrate(
    model: BiLSTMClassifier,
    ids: list[list[int]],
    masks: tuple[torch.Tensor, torch.Tensor],
    sources: list[str],
    device: torch.device,
) -> dict[str, Any]:
    """Fit the temperature on the validation texts (every source weighing the same) and set it on
    ``model`` (export puts it in the graph, so the served probabilities are the calibrated ones); returns
    the temperature and the validation log loss (mean over sources) before and after."""
    model.temperature_log_scale = model.temperature_log_slope = 0.0
    logits = predict_logits(model, ids, device)
    lengths = torch.tensor([len(x) for x in ids])
    weights = source_weights(sources)
    scale, slope = fit_temperature(logits, masks, lengths, weights)
    model.temperature_log_scale, model.temperature_log_slope = scale, slope
    temperature = (scale + slope * lengths.clamp(min=1).float().log()).exp()[:, None]

    def log_loss(scaled: torch.Tensor) -> float:  # every source weighing the same, as in the fit
        per_text = label_set_nll(scaled, *masks)
        return float((per_text * weights).sum() / weights.sum())

    before, after = log_loss(logits), log_loss(logits / temperature)
    log.info("temperature exp(%.3f + %.3f ln L): validation log loss %.4f -> %.4f", scale, slope, before, after)
    return {
        "temperature": {"log_scale": scale, "log_slope": slope},
        "val_log_loss_before_temperature": before,
        "val_log_loss_after_temperature": after,
    }
