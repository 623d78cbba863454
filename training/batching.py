"""Mini-batches for training: length-bucketed order and right-padded tensors (shared by the classifier and
the language-model pretraining)."""

from __future__ import annotations

import random

import torch
from torch import nn

from model_runtime.contract import PAD_ID


def bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort by length inside pools of 50 batches so a batch holds texts of similar length."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(ids: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad with PAD_ID: (B, T) int64 ids and (B,) int64 true lengths."""
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.int64)
    steps = max(1, int(lengths.max()))
    batch = torch.full((len(ids), steps), PAD_ID, dtype=torch.int64)
    for row, x in enumerate(ids):
        batch[row, : len(x)] = torch.tensor(x, dtype=torch.int64)
    return batch.to(device), lengths.to(device)


@torch.no_grad()
def predict_logits(model: nn.Module, ids: list[list[int]], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.config.num_classes)  # type: ignore[union-attr,arg-type]  # nn.Module attr
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = model(*collate([ids[i] for i in rows], device)).float().cpu()
    return out
