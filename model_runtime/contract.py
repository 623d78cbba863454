"""The model-directory contract between training (which writes it) and serving (which checks and reads it).

A model directory holds ``model.onnx`` (inputs ``input_ids`` (B, T) int64 right-padded with ``PAD_ID`` and
``lengths`` (B,) int64; outputs ``logits`` and ``probabilities`` (B, C) float32), ``tokenizer.json``
(Hugging Face ``tokenizers``; ``[PAD]`` = 0, ``[UNK]`` = 1), ``model_card.json`` (the typed card, with the
sha256 of every file) and ``splits.tsv`` (which text went to which split).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

CARD_FILE, MODEL_FILE, TOKENIZER_FILE, SPLITS_FILE = "model_card.json", "model.onnx", "tokenizer.json", "splits.tsv"
README_FILE = "README.md"
INPUT_IDS, LENGTHS = "input_ids", "lengths"
LOGITS, PROBABILITIES = "logits", "probabilities"
PAD_TOKEN, PAD_ID = "[PAD]", 0
UNK_TOKEN, UNK_ID = "[UNK]", 1
# Texts longer than the model's max tokens keep their LAST tokens (a review's verdict is usually at its end).
TRUNCATION_SIDE = "left"  # the tokenizers library's name for "drop tokens from the start"
TRUNCATION_POLICY = "keep_end"

IntArray = npt.NDArray[np.int64]

# The model this repository ships, served by default and reproduced by ``python -m training all``.
SHIPPED_MODEL_NAME, SHIPPED_MODEL_VERSION = "sentiment-bilstm", "5.0.0"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / SHIPPED_MODEL_NAME


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pad_ids(ids: list[list[int]], extra_steps: int = 0) -> tuple[IntArray, IntArray]:
    """The model's inputs: (B, T) int64 ids right-padded with PAD_ID and (B,) int64 true lengths;
    ``extra_steps`` adds padding columns beyond the longest text."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    batch = np.full((len(ids), max(1, int(lengths.max(initial=0))) + extra_steps), PAD_ID, dtype=np.int64)
    for row, x in enumerate(ids):
        batch[row, : len(x)] = x
    return batch, lengths


def length_groups(
    lengths: list[int], max_batch_tokens: int | None, max_batch_size: int | None = None
) -> list[list[int]]:
    """Row indices ordered by length, cut so that no group pads to more than ``max_batch_tokens``
    or holds more than ``max_batch_size`` rows (a falsy limit is no limit)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    token_cap = max_batch_tokens or float("inf")
    row_cap = max_batch_size or len(order)
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the newest row is the longest: the padded size is rows x its length.
        if current and (len(current) >= row_cap or (len(current) + 1) * max(1, lengths[i]) > token_cap):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups
