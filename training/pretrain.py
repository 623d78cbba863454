"""In-domain language-model pretraining of the embedding and the BiLSTM (Dai & Le 2015).

Before the classifier is trained, the network's own embedding and bidirectional LSTM learn to predict
text: the forward direction's state at position t predicts token t+1, the backward direction's state
predicts token t-1. The texts are the training splits' (labels unused), cut into windows of
``WINDOW`` tokens. The output layer is an adaptive softmax (Grave et al. 2017) over the vocabulary ordered
by frequency, so the 20,000-way prediction costs about as much as the LSTM itself on a CPU. Only the
embedding and LSTM weights are kept; the classifier head starts fresh.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.batching import bucketed_batches, collate
from training.model import BiLSTMClassifier

log = logging.getLogger(__name__)
WINDOW = 128  # tokens per training window
CUTOFFS = (2000, 8000)  # adaptive-softmax clusters by frequency rank


class LanguageModelHead(nn.Module):
    """Predicts neighbouring tokens from one direction's hidden states, one adaptive softmax per direction."""

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        cutoffs = [c for c in CUTOFFS if c < vocab_size - 1] or [max(1, vocab_size // 4)]  # small vocabularies
        self.forward_head = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, cutoffs, div_value=4.0)
        self.backward_head = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, cutoffs, div_value=4.0)


def frequency_ranks(ids: list[list[int]], vocab_size: int) -> torch.Tensor:
    """Token id -> rank by frequency in ``ids`` (0 = most frequent): the adaptive softmax's class order."""
    counts = Counter(t for x in ids for t in x)
    order = sorted(range(vocab_size), key=lambda t: (-counts.get(t, 0), t))
    ranks = torch.empty(vocab_size, dtype=torch.int64)
    ranks[torch.tensor(order)] = torch.arange(vocab_size)
    return ranks


def windows(ids: list[list[int]], rng: random.Random) -> list[list[int]]:
    """Every text cut into consecutive windows of at most WINDOW tokens (random offset per text)."""
    out = []
    for x in ids:
        start = -rng.randrange(WINDOW) if len(x) > WINDOW else 0
        for begin in range(start, len(x), WINDOW):
            piece = x[max(0, begin) : begin + WINDOW]
            if len(piece) >= 3:
                out.append(piece)
    return out


def pretrain(
    model: BiLSTMClassifier,
    ids: list[list[int]],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    """Fit ``model``'s embedding and LSTM as a bidirectional language model on ``ids``; returns the history."""
    ranks = frequency_ranks(ids, model.config.vocab_size).to(device)
    head = LanguageModelHead(model.config.hidden_size, model.config.vocab_size).to(device)
    params = [*model.embedding.parameters(), *model.lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    rng = random.Random(seed)
    history = []
    hidden = model.config.hidden_size
    for epoch in range(1, epochs + 1):
        model.train()
        pieces = windows(ids, rng)
        batches = bucketed_batches([len(x) for x in pieces], batch_size, rng)
        started, tokens, total = time.perf_counter(), 0, 0.0
        bar = tqdm(batches, desc=f"LM epoch {epoch}/{epochs}", unit="batch", leave=False)
        for rows in bar:
            batch, lengths = collate([pieces[i] for i in rows], device)
            states = model.encode(batch, lengths)  # (B, T, 2H)
            mask = torch.arange(batch.shape[1], device=device)[None, :] < lengths[:, None] - 1  # (B, T)
            # forward state at t -> token t+1; backward state at t+1 -> token t
            fwd = states[:, :-1, :hidden][mask[:, :-1]]
            bwd = states[:, 1:, hidden:][mask[:, :-1]]
            next_tokens = ranks[batch[:, 1:][mask[:, :-1]]]
            prev_tokens = ranks[batch[:, :-1][mask[:, :-1]]]
            loss = head.forward_head(fwd, next_tokens).loss + head.backward_head(bwd, prev_tokens).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            tokens += int(next_tokens.numel())
            total += loss.item() * int(next_tokens.numel())
            bar.set_postfix(
                loss=f"{total / max(tokens, 1) / 2:.3f}", tokens_s=f"{tokens / (time.perf_counter() - started):.0f}"
            )
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "lm_loss_per_direction": total / max(tokens, 1) / 2,
            "tokens": tokens,
            "seconds": seconds,
        }
        history.append(record)
        tqdm.write(
            f"LM epoch {epoch}: loss per direction {record['lm_loss_per_direction']:.3f} "
            f"({tokens / seconds:.0f} tokens/s)"
        )
    return history


def save_encoder(model: BiLSTMClassifier, history: list[dict[str, Any]], path: Path) -> None:
    """The pretrained network and its history, for later runs' ``load_encoder`` (``--pretrained-encoder``)."""
    torch.save({"model": model.state_dict(), "history": history}, path)


def load_encoder(model: BiLSTMClassifier, path: str | Path, device: torch.device) -> list[dict[str, Any]]:
    """Load what ``save_encoder`` wrote into ``model``; returns the pretraining history."""
    state = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    history: list[dict[str, Any]] = state["history"]
    log.info("encoder from %s (language model pretrained there)", path)
    return history
