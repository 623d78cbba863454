"""Admission by cost: what a request may take from the engine, decided as early as possible.

Costs are tokens, estimated from characters (no tokenizing on the event loop): a text of n characters
costs min(n / CHARS_PER_TOKEN, max tokens) + 1; a request body of b bytes about b / CHARS_PER_TOKEN before
it is read. The rate (``RateMeter``) is measured in the same units (cost per second of inference), so
the estimate's bias cancels out: the queue is bounded by its expected wait.

Two checks, in the order of a request's life:

- ``check_estimate`` before the body is read: would work of about this size fit the queue now? It holds
  nothing, so a client that never sends its body costs no one else anything.
- ``slot`` once the body is in and valid: a place among the requests in flight (at most
  ``max_concurrent_requests``), held until the answer is ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from service.budget import CostBudget, QueueFullError

CHARS_PER_TOKEN = 4.0  # English reviews: 4.6 characters per sub-word token; a little pessimistic on purpose


class Admission:
    """In-flight slots and cost estimates for one engine's queues (``lanes``: lane name -> its budget)."""

    def __init__(self, max_in_flight: int, lanes: dict[str, CostBudget], most: dict[str, float]) -> None:
        self.max_in_flight = max_in_flight
        self.lanes = lanes
        self.most = most  # per lane: the most one request can cost (an estimate is capped at it)
        self.in_flight = 0
        self.max_tokens = 1

    def text_cost(self, text: str) -> float:
        return min(len(text) / CHARS_PER_TOKEN, self.max_tokens) + 1

    def check_estimate(self, body_bytes: int | None, lane: str) -> None:
        """QueueFullError unless about ``body_bytes`` of texts would fit ``lane``'s queue now (unknown size:
        nothing to check yet)."""
        if body_bytes:
            self.lanes[lane].check(min(body_bytes / CHARS_PER_TOKEN, self.most[lane]), 1)

    @contextlib.contextmanager
    def slot(self, lane: str) -> Iterator[None]:
        """A place among the requests in flight, or QueueFullError at once."""
        if self.in_flight >= self.max_in_flight:
            wait = self.lanes[lane].expected_wait()
            raise QueueFullError(wait, f"too many requests in flight (limit {self.max_in_flight})")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
