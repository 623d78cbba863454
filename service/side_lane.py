"""``SideLane`` runs costly one-off jobs (explanations) on a thread of their own, bounded by cost like the
batcher's lanes, so that they can slow each other but never take the batch workers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.batcher import InferenceError, NotAcceptingError
from service.budget import CostBudget, RateMeter

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a side-lane job whose request has ended (the client left, or its deadline passed)."""


class SideLane:
    """One thread for costly one-off jobs, bounded by the work queued on it (``budget``, in cost units, at
    the lane's own measured ``rate``). A job gets an Event that is set when its request ends: it checks it
    between steps and stops (JobCancelled), so that no work is finished for nobody; a job still queued is
    withdrawn."""

    def __init__(self, budget: CostBudget, rate: RateMeter, name: str) -> None:
        self.budget, self.rate = budget, rate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._accepting = True

    def admit(self, cost: float) -> None:
        if not self._accepting:
            raise NotAcceptingError
        self.budget.check(cost, 1)

    def expected_seconds(self, cost: float) -> float:
        """How long ``cost`` takes on this lane at its measured rate (its own run, without the queue)."""
        return cost / max(self.rate.value, 1e-9)

    async def call(self, fn: Callable[[threading.Event], T], cost: float) -> T:
        """Run ``fn(cancelled)`` on the lane's thread once the jobs before it are done."""
        self.admit(cost)
        self.budget.cost += cost
        self.budget.texts += 1
        cancelled = threading.Event()

        def timed() -> T:
            started = time.perf_counter()
            result = fn(cancelled)
            self.rate.observe(cost, time.perf_counter() - started)
            return result

        job = asyncio.get_running_loop().run_in_executor(self._executor, timed)

        def release(_: object) -> None:  # the job's cost leaves the budget when it ends, however it ends
            self.budget.cost -= cost
            self.budget.texts -= 1

        job.add_done_callback(release)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled.set()  # a running job stops at its next step; a queued one never starts
            job.cancel()
            raise
        except JobCancelled:
            raise asyncio.CancelledError from None
        except Exception as exc:
            log.exception("inference failed for a job of cost %.0f", cost)
            raise InferenceError(str(exc)) from exc

    def drain(self) -> None:
        self._accepting = False
        self._executor.shutdown(wait=True)
