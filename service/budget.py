"""What a queue may hold, in cost units (tokens), and the rate they are worked off at: ``CostBudget`` bounds
a queue by its expected wait, ``RateMeter`` measures the rate, ``QueueFullError`` is the refusal (429 with
``Retry-After``). The batcher and the explanation lane are bounded by them; admission asks them early."""

from __future__ import annotations

import math
from collections.abc import Callable


class QueueFullError(Exception):
    """The request's work does not fit the queue; ``retry_after`` is the expected wait in seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


INITIAL_RATE = 50_000.0  # cost units per second until the warm-up has measured this host


class RateMeter:
    """Cost units per second over all workers: measured at warm-up, then a moving average of real batches."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.value = INITIAL_RATE

    def observe(self, cost: float, seconds: float) -> None:
        if seconds > 0 and cost > 0:
            self.value = 0.8 * self.value + 0.2 * (cost / seconds) * self.workers

    def per_worker(self) -> float:
        return self.value / self.workers


class CostBudget:
    """Queued work in tokens against a budget that follows the measured rate."""

    def __init__(
        self, budget: Callable[[], float], rate: Callable[[], float], max_texts: int, max_wait_s: float | None = None
    ) -> None:
        self.budget, self.rate, self.max_texts = budget, rate, max_texts
        self.max_wait_s = max_wait_s  # the most a Retry-After may promise (the budget, in seconds)
        self.cost = 0.0
        self.texts = 0

    def check(self, cost: float, texts: int) -> None:
        """Raise QueueFullError unless ``cost`` tokens in ``texts`` texts fit now."""
        if self.texts + texts > self.max_texts:
            raise QueueFullError(self.expected_wait(), f"the queue is full ({self.max_texts} texts)")
        if self.cost + cost > self.budget() and self.cost > 0:
            raise QueueFullError(self.expected_wait(), f"the queue is full ({self.expected_wait():.1f} s of work)")

    def expected_wait(self) -> float:
        wait = self.cost / max(self.rate(), 1e-9)
        return wait if self.max_wait_s is None else min(wait, self.max_wait_s)

    def retry_after(self) -> int:
        return max(1, math.ceil(self.expected_wait()))
