"""Dynamic batching: one bounded queue, one consumer, ``workers`` inference threads.

Each request is one entry (its texts and a future). Whenever an inference thread is free, the consumer
takes entries up to ``max_batch_size`` texts, drops those whose client has gone, runs the model on that
thread and resolves the futures. While batches run, new requests queue up and form the next batch, so
under load batches fill by themselves; ``max_wait_ms`` can additionally hold a batch open for stragglers.
Several single-threaded inference threads beat one multi-threaded one on a small CPU host: no parallel
section waits on a core that the HTTP event loop has just taken (measured: README, Performance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from model_runtime import Prediction

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueFullError(Exception):
    """The queue holds ``max_queue`` texts already; the client should retry later."""


class NotAcceptingError(Exception):
    """The batcher is draining or stopped."""


class InferenceError(Exception):
    """The model run failed for the batch this request was in (e.g. GPU memory); the server log has why."""


@dataclass(eq=False)
class _Entry:
    texts: list[str]
    future: asyncio.Future[list[Prediction]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """Observer hooks (metrics); all optional."""

    on_batch: Callable[[int, float, float], None] | None = None  # texts, inference seconds, queue wait (oldest)
    on_depth: Callable[[int], None] | None = None


class Batcher:
    def __init__(
        self,
        predict: Callable[[list[str]], list[Prediction]],
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        stats: BatchStats | None = None,
        workers: int = 1,
    ) -> None:
        self._predict = predict
        self._max_batch = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._max_queue = max_queue
        self._stats = stats or BatchStats()
        self._queue: deque[_Entry] = deque()
        self._queued_texts = 0
        self._wakeup = asyncio.Event()
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()

    @property
    def depth(self) -> int:
        """Texts waiting (not yet taken into a batch)."""
        return self._queued_texts

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def submit(self, texts: list[str]) -> list[Prediction]:
        """Predictions for ``texts`` in order. Cancelling the caller withdraws a queued entry."""
        if not self._accepting:
            raise NotAcceptingError
        if self._queued_texts + len(texts) > self._max_queue:
            raise QueueFullError
        entry = _Entry(texts, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._set_depth(self._queued_texts + len(texts))
        self._wakeup.set()
        try:
            return await entry.future
        finally:
            # Still queued (caller cancelled or timed out): the consumer will skip it; free its slots now.
            if not entry.future.done():
                entry.future.cancel()
            if entry in self._queue:
                self._queue.remove(entry)
                self._set_depth(self._queued_texts - len(texts))

    async def call(self, fn: Callable[[], T], texts: int) -> T:
        """Run ``fn`` (work on ``texts`` texts that is not a plain batch, e.g. an explanation) on an inference
        thread of its own, sharing the threads and the queue bound with the batches."""
        if not self._accepting:
            raise NotAcceptingError
        if self._queued_texts + texts > self._max_queue:
            raise QueueFullError
        self._set_depth(self._queued_texts + texts)
        try:
            await self._free_workers.acquire()
        finally:
            self._set_depth(self._queued_texts - texts)
        job = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        # The thread cannot be stopped: its slot comes back when it ends, even if the caller has gone.
        job.add_done_callback(lambda _: self._free_workers.release())
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("inference failed for a job on %d texts", texts)
            raise InferenceError(str(exc)) from exc

    def _set_depth(self, depth: int) -> None:
        self._queued_texts = depth
        if self._stats.on_depth:
            self._stats.on_depth(depth)

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        while self._queue:
            entry = self._queue[0]
            if batch and size + len(entry.texts) > self._max_batch:
                break
            self._queue.popleft()
            self._set_depth(self._queued_texts - len(entry.texts))
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
            if self._max_wait and self._queued_texts < self._max_batch:
                deadline = self._queue[0].enqueued + self._max_wait if self._queue else 0.0
                while self._queued_texts < self._max_batch and (delay := deadline - time.perf_counter()) > 0:
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

    async def _run_batch(self, batch: list[_Entry]) -> None:
        try:
            texts = [t for entry in batch for t in entry.texts]
            waited = time.perf_counter() - batch[0].enqueued
            started = time.perf_counter()
            try:
                predictions = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, texts)
            except Exception as exc:  # a model failure fails this batch's requests, not the service
                log.exception("inference failed for a batch of %d texts", len(texts))
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(InferenceError(str(exc)))
                return
            if self._stats.on_batch:
                self._stats.on_batch(len(texts), time.perf_counter() - started, waited)
            offset = 0
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_result(predictions[offset : offset + len(entry.texts)])
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
