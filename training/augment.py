"""Short training inputs cut from long ones: runs of 1-3 consecutive sentences of a long training text,
with its label, so that the network sees short texts (and learns that a plain plot sentence from a
positive review says little)."""

from __future__ import annotations

import random
from typing import Any

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
