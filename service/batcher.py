"""Dynamic batching with admission by cost: one bounded queue, one consumer, ``workers`` inference threads.

Each request is one entry (its texts, their estimated cost in tokens, and a future). Whenever an inference
thread is free, the consumer takes entries up to ``max_batch_size`` texts, drops those whose client has
gone, runs the model on that thread and resolves the futures. While batches run, new requests queue up
and form the next batch, so under load batches fill by themselves; ``max_wait_ms`` can additionally hold
a batch open for stragglers.

The queue is bounded by the work it holds: ``admit`` refuses a request whose cost would take the queued
work past ``budget()`` tokens (the engine sets that to the measured rate times the longest wait it
allows), or past ``max_queue`` texts. ``admit`` is cheap, so the web layer calls it with an estimate
before it has even read the body, and again with the real texts.

``SideLane`` runs costly one-off jobs (explanations) on a thread of their own, bounded by cost too, so
that they can slow each other but never take the batch workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.budget import CostBudget, RateMeter

log = logging.getLogger(__name__)
T = TypeVar("T")
In = TypeVar("In")  # one text as submitted
Item = TypeVar("Item")  # one text's result
Tag = TypeVar("Tag")  # what a batch ran on (the model), handed back with the results


class NotAcceptingError(Exception):
    """The batcher is draining or stopped."""


class InferenceError(Exception):
    """The model run failed for the batch this request was in (e.g. GPU memory); the server log has why."""


@dataclass(eq=False)
class _Entry(Generic[In, Tag, Item]):
    texts: list[In]
    cost: float
    future: asyncio.Future[tuple[Tag, list[Item]]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """Observer hooks (metrics, rate measurement); all optional."""

    on_batch: Callable[[int, float, float, float], None] | None = None  # texts, cost, seconds, queue wait
    on_depth: Callable[[int], None] | None = None


class Batcher(Generic[In, Tag, Item]):
    def __init__(
        self,
        run: Callable[[list[In]], tuple[Tag, list[Item]]],
        max_batch_size: int,
        max_wait_ms: float,
        budget: CostBudget,
        stats: BatchStats | None = None,
        workers: int = 1,
    ) -> None:
        self._run_batch_fn = run
        self._max_batch = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self.budget = budget
        self._stats = stats or BatchStats()
        self._queue: deque[_Entry[In, Tag, Item]] = deque()
        self._wakeup = asyncio.Event()
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()

    @property
    def depth(self) -> int:
        """Texts waiting (not yet taken into a batch)."""
        return self.budget.texts

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def admit(self, cost: float, texts: int) -> None:
        """Raise NotAcceptingError or QueueFullError unless work of this size can be queued now."""
        if not self._accepting:
            raise NotAcceptingError
        self.budget.check(cost, texts)

    async def submit(self, texts: list[In], cost: float) -> tuple[Tag, list[Item]]:
        """Results for ``texts`` in order, with the tag of what ran them. Cancelling the caller withdraws
        a queued entry."""
        self.admit(cost, len(texts))
        entry: _Entry[In, Tag, Item] = _Entry(texts, cost, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._add(cost, len(texts))
        self._wakeup.set()
        try:
            return await entry.future
        finally:
            # Still queued (caller cancelled or timed out): the consumer will skip it; free its slots now.
            if not entry.future.done():
                entry.future.cancel()
            if entry in self._queue:
                self._queue.remove(entry)
                self._add(-cost, -len(texts))

    def _add(self, cost: float, texts: int) -> None:
        self.budget.cost += cost
        self.budget.texts += texts
        if self._stats.on_depth:
            self._stats.on_depth(self.budget.texts)

    def _take_batch(self) -> list[_Entry[In, Tag, Item]]:
        batch: list[_Entry[In, Tag, Item]] = []
        size = 0
        while self._queue:
            entry = self._queue[0]
            if batch and size + len(entry.texts) > self._max_batch:
                break
            self._queue.popleft()
            self._add(-entry.cost, -len(entry.texts))
            if entry.future.done():  # client gone
                continue
            batch.append(entry)
            size += len(entry.texts)
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if not self._accepting:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._free_workers.acquire()
            if self._max_wait and self.budget.texts < self._max_batch:
                deadline = self._queue[0].enqueued + self._max_wait if self._queue else 0.0
                while self.budget.texts < self._max_batch and (delay := deadline - time.perf_counter()) > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), delay)
            batch = self._take_batch()
            if not batch:
                self._free_workers.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        if self._running:
            await asyncio.wait(set(self._running))

    async def _run_batch(self, batch: list[_Entry[In, Tag, Item]]) -> None:
        try:
            texts = [t for entry in batch for t in entry.texts]
            waited = time.perf_counter() - batch[0].enqueued
            started = time.perf_counter()
            try:
                tag, results = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_batch_fn, texts
                )
            except Exception as exc:  # a model failure fails this batch's requests, not the service
                log.exception("inference failed for a batch of %d texts", len(texts))
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(InferenceError(str(exc)))
                return
            if self._stats.on_batch:
                cost = sum(entry.cost for entry in batch)
                self._stats.on_batch(len(texts), cost, time.perf_counter() - started, waited)
            offset = 0
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_result((tag, results[offset : offset + len(entry.texts)]))
                offset += len(entry.texts)
        finally:
            self._free_workers.release()

    async def drain(self) -> None:
        """Refuse new work, finish everything already queued and running, then stop the consumer."""
        self._accepting = False
        self._wakeup.set()
        if self._task:
            await self._task
        self._executor.shutdown(wait=True)


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
