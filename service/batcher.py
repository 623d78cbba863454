"""Dynamic batching with admission by cost: bounded queues (lanes), one consumer, ``workers`` inference threads.

Each request is one entry (its texts, their estimated cost in tokens, and a future). Whenever an inference
thread is free, the consumer takes entries up to ``max_batch_size`` texts, drops those whose client has
gone, runs the model on that thread and resolves the futures. While batches run, new requests queue up
and form the next batch, so under load batches fill by themselves; ``max_wait_ms`` can additionally hold
a batch open for stragglers.

Requests queue on lanes, each bounded by its own budget and filled into a batch in the lanes' order: the
default lane (``/predict``'s small requests) first, then each further lane (``Lane``): at most
``per_batch`` of its texts per batch, and a large request cut into slices of ``slice_texts`` texts that
queue one behind the other, so a 1,000-sentence document is worked off a slice per batch while the first
lane's requests keep going first. A lane with ``share`` set is owed that much of a batch whenever it has
work waiting, so it is never starved either; one with ``spare_only`` runs only when the lanes before it
have nothing queued (work that may wait: it takes spare capacity, never a share). A lane may bound its
slices' cost (``slice_cost``: a batch then holds one such slice of it) and the batches holding its texts
that run at once (``max_running``), so that the other workers stay free for the first lane. These bounds
and ``per_batch`` hold while the first lane has work (or had some in the last LIVE_WINDOW_S); alone, a lane
uses every worker, in batches of up to ``alone_cost``: short enough that a request that comes then waits
little.

A lane is bounded by the work it holds, queued or running: ``admit`` refuses a request whose cost would take
it past ``budget()`` tokens (the measured rate times the longest wait allowed), or past ``max_queue`` texts;
a request's cost leaves the budget when its batch has finished. ``admit`` is cheap: the web layer calls it
with an estimate before it has read the body, and again with the real texts.

Costly one-off jobs (explanations) run on ``service.side_lane`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.budget import CostBudget
from service.lanes import Lane

log = logging.getLogger(__name__)
In = TypeVar("In")  # one text as submitted
Item = TypeVar("Item")  # one text's result
Tag = TypeVar("Tag")  # what a batch ran on (the model), handed back with the results


class NotAcceptingError(Exception):
    """The batcher is draining or stopped."""


class InferenceError(Exception):
    """The model run failed for the batch this request was in (e.g. GPU memory); the server log has why."""


DEFAULT_LANE = "predict"
LIVE_WINDOW_S = 1.0  # a spare-only lane takes every worker only when the other lanes have been idle this long


@dataclass(eq=False)
class _Entry(Generic[In, Tag, Item]):
    texts: list[In]
    cost: float
    future: asyncio.Future[tuple[Tag, list[Item]]]
    lane: str = DEFAULT_LANE
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
        lanes: dict[str, Lane] | None = None,
    ) -> None:
        self._run_batch_fn = run
        self._max_batch = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self.budget = budget
        default = Lane(budget, slice_texts=max_batch_size, per_batch=max_batch_size)
        self.lanes: dict[str, Lane] = {DEFAULT_LANE: default, **(lanes or {})}
        self._queues: dict[str, deque[_Entry[In, Tag, Item]]] = {name: deque() for name in self.lanes}
        self._stats = stats or BatchStats()
        self._wakeup = asyncio.Event()
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._free_workers = asyncio.Semaphore(workers)
        self._running: set[asyncio.Task[None]] = set()
        self._lane_batches: Counter[str] = Counter()  # running batches holding each lane's texts
        self._last_live = -LIVE_WINDOW_S  # when a request last came on a lane that is not spare-only
        self._last_first = float("-inf")  # and on the first lane

    @property
    def depth(self) -> int:
        """Texts waiting (not yet taken into a batch), on every lane."""
        return sum(lane.budget.texts for lane in self.lanes.values())

    @property
    def _queued(self) -> bool:
        return any(self._queues.values())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def admit(self, cost: float, texts: int, lane: str = DEFAULT_LANE) -> None:
        """Raise NotAcceptingError or QueueFullError unless work of this size can be queued on ``lane`` now."""
        if not self._accepting:
            raise NotAcceptingError
        self.lanes[lane].budget.check(cost, texts)

    async def submit(
        self, texts: list[In], cost: float, lane: str = DEFAULT_LANE, costs: list[float] | None = None
    ) -> tuple[Tag, list[Item]]:
        """Results for ``texts`` in order, with the tag of what ran them (the last slice's, for a request cut
        into slices). ``costs``: each text's, when known (slices are then bounded by cost too). Cancelling the
        caller withdraws whatever of it is still queued."""
        self.admit(cost, len(texts), lane)
        if not self.lanes[lane].spare_only:
            self._last_live = time.perf_counter()
        if lane == DEFAULT_LANE:
            self._last_first = time.perf_counter()
        loop = asyncio.get_running_loop()
        each = costs if costs is not None else [cost / len(texts)] * len(texts)
        entries: list[_Entry[In, Tag, Item]] = [
            _Entry(texts[a:b], sum(each[a:b]), loop.create_future(), lane) for a, b in self._slices(each, lane)
        ]
        for entry in entries:
            self._queues[lane].append(entry)
            self._add(lane, entry.cost, len(entry.texts))
        self._wakeup.set()
        try:
            results: list[Item] = []
            tag: Tag | None = None
            for entry in entries:
                tag, part = await entry.future
                results += part
            assert tag is not None
            return tag, results
        finally:
            # Still queued (caller cancelled, timed out, or a slice failed): the consumer will skip them; free
            # their place now.
            for entry in entries:
                if not entry.future.done():
                    entry.future.cancel()
                if entry in self._queues[lane]:
                    self._queues[lane].remove(entry)
                    self._add(lane, -entry.cost, -len(entry.texts))

    def _slices(self, costs: list[float], lane: str) -> list[tuple[int, int]]:
        """(start, end) of each slice: at most the lane's slice_texts texts and slice_cost, one text at least."""
        limits, out, start, total = self.lanes[lane], [], 0, 0.0
        for i, cost in enumerate(costs):
            if i > start and (i - start >= limits.slice_texts or total + cost > limits.slice_cost):
                out.append((start, i))
                start, total = i, 0.0
            total += cost
        return [*out, (start, len(costs))]

    def _add(self, lane: str, cost: float, texts: int) -> None:
        budget = self.lanes[lane].budget
        budget.cost += cost
        budget.texts += texts
        if self._stats.on_depth:
            self._stats.on_depth(self.depth)

    def _take_batch(self) -> list[_Entry[In, Tag, Item]]:
        """The next batch: each lane in order, within what the batch has room for and what the waiting lanes
        after it are owed. A taken entry's texts leave its lane's count of waiting texts; its cost stays in
        the lane's budget until its batch has run (``_release``)."""
        batch: list[_Entry[In, Tag, Item]] = []
        size, names, contended = 0, list(self.lanes), self._contended()
        waiting = [bool(self._queues[n]) for n in names]  # before this batch takes anything
        for position, name in enumerate(names):
            lane, queue = self.lanes[name], self._queues[name]
            if (lane.spare_only and any(waiting[:position])) or self._busy(name):
                continue
            owed = sum(self._owed(n) for n in names[position + 1 :] if self._queues[n] and not self._busy(n))
            room, cost = min(self._max_batch - owed, (lane.per_batch if contended else self._max_batch) + size), 0.0
            while queue:
                entry = queue[0]
                bounded = cost and cost + entry.cost > (lane.slice_cost if contended else lane.alone_cost)
                if (batch and size + len(entry.texts) > room) or bounded:
                    break
                queue.popleft()
                self._add(name, 0.0, -len(entry.texts))
                if entry.future.done():  # client gone
                    self._release([entry])
                    continue
                batch.append(entry)
                size, cost = size + len(entry.texts), cost + entry.cost
        return batch

    def _busy(self, name: str) -> bool:
        """Whether the lane already has as many batches running as it may (a spare-only lane: one, while the
        other lanes have had work lately)."""
        lane = self.lanes[name]
        if lane.spare_only and time.perf_counter() - self._last_live < LIVE_WINDOW_S:
            # while live work keeps coming, spare work runs only on a worker that nothing else is using
            return any(n for n in self._lane_batches.values())
        return bool(lane.max_running) and self._lane_batches[name] >= lane.max_running and self._contended()

    def _contended(self) -> bool:
        """Whether the first lane has work queued or running, or had some in the last LIVE_WINDOW_S: only then do
        the other lanes keep to their bounds on a batch's cost and on their running batches (alone, they use
        every worker)."""
        if self._queues[DEFAULT_LANE] or self._lane_batches[DEFAULT_LANE]:
            return True
        return time.perf_counter() - self._last_first < LIVE_WINDOW_S

    def _owed(self, name: str) -> int:
        """The texts of a batch owed to a waiting lane: its share, and at least one of its slices."""
        lane = self.lanes[name]
        return max(round(lane.share * self._max_batch), min(lane.slice_texts, lane.per_batch)) if lane.share else 0

    def _release(self, entries: list[_Entry[In, Tag, Item]]) -> None:
        for entry in entries:
            self._add(entry.lane, -entry.cost, 0)

    async def _run(self) -> None:
        while True:
            if not self._queued:
                if not self._accepting:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._free_workers.acquire()
            queue = self._queues[DEFAULT_LANE]
            if self._max_wait and self.budget.texts < self._max_batch:
                deadline = queue[0].enqueued + self._max_wait if queue else 0.0
                while self.budget.texts < self._max_batch and (delay := deadline - time.perf_counter()) > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), delay)
            batch = self._take_batch()
            if not batch:
                self._free_workers.release()
                if self._queued:  # what waits is on a lane at its limit of running batches: wait for one to end
                    self._wakeup.clear()
                    await self._wakeup.wait()
                continue
            self._lane_batches.update({entry.lane for entry in batch})
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
            self._release(batch)
            self._lane_batches.subtract({entry.lane for entry in batch})
            self._free_workers.release()
            self._wakeup.set()  # a lane at its limit may run again

    async def drain(self) -> None:
        """Refuse new work, finish everything already queued and running, then stop the consumer."""
        self._accepting = False
        self._wakeup.set()
        if self._task:
            await self._task
        self._executor.shutdown(wait=True)
