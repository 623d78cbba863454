"""The batcher, its cost budget and the side lane: real objects, real threads, no HTTP, no timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from service.batcher import Batcher, InferenceError, NotAcceptingError
from service.budget import CostBudget, QueueFullError, RateMeter
from service.lanes import Lane
from service.side_lane import JobCancelled, SideLane


def run(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), 20))


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition`` holds (other tasks run meanwhile; no clock involved)."""
    while not condition():
        await asyncio.sleep(0)


class GatedModel:
    """A stand-in inference function that records its batches and blocks until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.fail_next = False

    def __call__(self, texts: list[str]) -> tuple[str, list[str]]:
        self.batches.append(list(texts))
        tag = f"batch{len(self.batches)}"  # numbered as they start (another may start while this one runs)
        self.started.release()
        assert self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("out of memory")
        return tag, [t.upper() for t in texts]


def roomy() -> CostBudget:
    return CostBudget(lambda: 1e9, lambda: 100.0, 10_000)


async def one_batch_running(max_batch_size: int) -> tuple[GatedModel, Batcher[str, str, str], asyncio.Future[Any]]:
    """A started batcher whose first batch (one request, "a") is running, held by the gated model."""
    model = GatedModel()
    batcher: Batcher[str, str, str] = Batcher(model, max_batch_size=max_batch_size, max_wait_ms=0, budget=roomy())
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(["a"], 1))
    assert await asyncio.to_thread(model.started.acquire, True, 10)
    return model, batcher, first


def test_requests_queued_while_a_batch_runs_form_the_next_batch_in_order() -> None:
    async def scenario() -> None:
        model, batcher, first = await one_batch_running(max_batch_size=4)
        queued = [asyncio.ensure_future(batcher.submit([f"t{i}", f"u{i}"], 2)) for i in range(3)]
        await until(lambda: batcher.depth == 6)
        model.release.set()
        assert await first == ("batch1", ["A"])
        results = await asyncio.gather(*queued)
        assert model.batches[1] == ["t0", "u0", "t1", "u1"]  # 4 texts at most; the third request waits
        assert model.batches[2] == ["t2", "u2"]
        assert results == [("batch2", ["T0", "U0"]), ("batch2", ["T1", "U1"]), ("batch3", ["T2", "U2"])]
        assert batcher.depth == 0 and batcher.budget.cost == 0
        await batcher.drain()

    run(scenario)


def test_a_request_withdrawn_while_queued_is_never_run_and_frees_its_budget() -> None:
    async def scenario() -> None:
        model, batcher, first = await one_batch_running(max_batch_size=8)
        gone = asyncio.ensure_future(batcher.submit(["gone"], 5))
        kept = asyncio.ensure_future(batcher.submit(["kept"], 1))
        await until(lambda: batcher.depth == 2)
        gone.cancel()
        await until(lambda: batcher.budget.cost == 2)  # "kept" queued, and "a" still running: a cost stays till done
        model.release.set()
        await first
        assert await kept == ("batch2", ["KEPT"])
        assert ["gone"] not in model.batches and all("gone" not in b for b in model.batches)
        await batcher.drain()

    run(scenario)


def test_a_failed_run_fails_its_batch_only() -> None:
    async def scenario() -> None:
        model = GatedModel()
        model.fail_next = True
        model.release.set()
        batcher: Batcher[str, str, str] = Batcher(model, max_batch_size=8, max_wait_ms=0, budget=roomy())
        batcher.start()
        with pytest.raises(InferenceError, match="out of memory"):
            await batcher.submit(["x"], 1)
        assert await batcher.submit(["y"], 1) == ("batch2", ["Y"])
        await batcher.drain()

    run(scenario)


def test_drain_finishes_queued_work_and_refuses_new_work() -> None:
    async def scenario() -> None:
        model = GatedModel()
        batcher: Batcher[str, str, str] = Batcher(model, max_batch_size=1, max_wait_ms=0, budget=roomy(), workers=1)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([t], 1)) for t in "abc"]
        assert await asyncio.to_thread(model.started.acquire, True, 10)
        draining = asyncio.ensure_future(batcher.drain())
        await until(lambda: not batcher._accepting)
        with pytest.raises(NotAcceptingError):
            await batcher.submit(["late"], 1)
        model.release.set()
        await draining
        assert [r[1] for r in await asyncio.gather(*pending)] == [["A"], ["B"], ["C"]]

    run(scenario)


def test_cost_budget_refuses_work_past_its_budget_or_text_cap_but_always_takes_one_request() -> None:
    budget = CostBudget(lambda: 100.0, lambda: 50.0, max_texts=10)
    budget.check(500, 1)  # an empty queue takes any one request, however costly
    budget.cost, budget.texts = 80.0, 4
    budget.check(20, 1)
    with pytest.raises(QueueFullError, match=r"1\.6 s of work") as info:
        budget.check(21, 1)
    assert info.value.retry_after == pytest.approx(80 / 50)
    assert budget.retry_after() == 2
    with pytest.raises(QueueFullError, match=r"10 texts"):
        budget.check(1, 7)


def test_the_side_lane_runs_one_job_at_a_time_and_releases_its_cost() -> None:
    async def scenario() -> None:
        lane = SideLane(CostBudget(lambda: 10.0, lambda: 1.0, 100), RateMeter(1), "explain")
        gate = threading.Event()
        threads: set[str] = set()

        def job(value: int) -> Callable[[threading.Event], int]:
            def work(_: threading.Event) -> int:
                threads.add(threading.current_thread().name)
                assert gate.wait(10)
                return value

            return work

        first = asyncio.ensure_future(lane.call(job(1), 6))
        second = asyncio.ensure_future(lane.call(job(2), 4))
        await until(lambda: lane.budget.cost == 10)
        with pytest.raises(QueueFullError):
            await lane.call(job(3), 1)
        gate.set()
        assert list(await asyncio.gather(first, second)) == [1, 2]
        await until(lambda: lane.budget.cost == 0)
        assert len(threads) == 1
        lane.drain()
        with pytest.raises(NotAcceptingError):
            await lane.call(job(4), 1)

    run(scenario)


def test_a_side_lane_job_whose_request_ended_stops_and_a_queued_one_never_starts() -> None:
    """The request of a running job ends (its client left, its deadline passed): the job sees the flag at its
    next step and stops; a job still queued behind it is withdrawn without running. Retry-After never
    promises more than the lane's budget in seconds."""

    async def scenario() -> None:
        rate = RateMeter(1)
        rate.value = 1.0
        lane = SideLane(CostBudget(lambda: 10.0, lambda: rate.value, 100, max_wait_s=3), rate, "explain")
        steps: list[int] = []
        started = threading.Event()

        def running(cancelled: threading.Event) -> int:
            started.set()
            for step in range(500):
                if cancelled.is_set():
                    raise JobCancelled
                steps.append(step)
                time.sleep(0.01)
            return len(steps)

        def queued(_: threading.Event) -> int:
            steps.append(-1)
            return -1

        first = asyncio.ensure_future(lane.call(running, 6))
        second = asyncio.ensure_future(lane.call(queued, 3))
        await asyncio.to_thread(started.wait, 10)
        with pytest.raises(QueueFullError) as refused:
            await lane.call(queued, 5)
        assert refused.value.retry_after == 3  # 9 s of queued work at this rate, but never past the budget
        second.cancel()
        first.cancel()
        await until(lambda: lane.budget.cost == 0)
        assert 0 < len(steps) < 500 and -1 not in steps
        with pytest.raises(asyncio.CancelledError):
            await first

    run(scenario)


def test_a_large_request_on_a_lane_goes_in_slices_that_give_way_to_the_first_lane() -> None:
    """A 10-text request on a sliced lane (slices of 2, at most 2 per batch) is worked off a slice per batch
    while the default lane's requests, queued after it, go first; its cost stays in its lane's budget until
    the batch that ran it has finished; its answer comes back whole and in order."""

    async def scenario() -> None:
        model = GatedModel()
        documents = CostBudget(lambda: 1e9, lambda: 100.0, 10_000)
        lanes = {"analyze": Lane(documents, slice_texts=2, per_batch=2, share=0.25)}
        batcher: Batcher[str, str, str] = Batcher(
            model, max_batch_size=4, max_wait_ms=0, budget=roomy(), workers=1, lanes=lanes
        )
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], 1))
        assert await asyncio.to_thread(model.started.acquire, True, 10)
        big = asyncio.ensure_future(batcher.submit([f"d{i}" for i in range(10)], 10.0, "analyze"))
        small = [asyncio.ensure_future(batcher.submit([f"p{i}"], 1)) for i in range(6)]
        await until(lambda: batcher.depth == 16)
        assert documents.cost == 10.0 and documents.texts == 10
        model.release.set()
        await first
        assert await big == ("batch6", [f"D{i}" for i in range(10)])
        await asyncio.gather(*small)
        # each batch: the default lane first, up to the batch less one slice owed to the waiting documents
        assert model.batches[1:] == [
            ["p0", "p1", "d0", "d1"],
            ["p2", "p3", "d2", "d3"],
            ["p4", "p5", "d4", "d5"],
            ["d6", "d7"],
            ["d8", "d9"],
        ]
        assert documents.cost == 0 and batcher.budget.cost == 0
        await batcher.drain()

    run(scenario)


def test_a_lane_s_cost_counts_until_its_batch_has_run() -> None:
    async def scenario() -> None:
        model, batcher, first = await one_batch_running(max_batch_size=4)
        assert batcher.depth == 0 and batcher.budget.cost == 1  # taken into a batch: no longer waiting, still work
        model.release.set()
        await first
        await until(lambda: batcher.budget.cost == 0)
        await batcher.drain()

    run(scenario)


def test_a_spare_only_lane_runs_only_when_the_lanes_before_it_have_nothing_queued() -> None:
    async def scenario() -> None:
        model = GatedModel()
        background = CostBudget(lambda: 1e9, lambda: 100.0, 10_000)
        lanes = {"jobs": Lane(background, slice_texts=1, per_batch=1, spare_only=True)}
        batcher: Batcher[str, str, str] = Batcher(
            model, max_batch_size=8, max_wait_ms=0, budget=roomy(), workers=1, lanes=lanes
        )
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], 1))
        assert await asyncio.to_thread(model.started.acquire, True, 10)
        job = asyncio.ensure_future(batcher.submit(["j0", "j1"], 2, "jobs"))
        live = asyncio.ensure_future(batcher.submit(["p0", "p1"], 2))
        await until(lambda: batcher.depth == 4)
        model.release.set()
        await asyncio.gather(first, job, live)
        assert model.batches[1:] == [["p0", "p1"], ["j0"], ["j1"]]
        await batcher.drain()

    run(scenario)


def started_with_a_document_lane(model: GatedModel, workers: int) -> Batcher[str, str, str]:
    """A started batcher whose "analyze" lane takes one text of cost 1 a slice and a batch, with one batch
    of its own running at a time (while the first lane is busy)."""
    documents = CostBudget(lambda: 1e9, lambda: 100.0, 10_000)
    lanes = {"analyze": Lane(documents, slice_texts=1, per_batch=1, slice_cost=1.0, max_running=1)}
    batcher: Batcher[str, str, str] = Batcher(
        model, max_batch_size=8, max_wait_ms=0, budget=roomy(), workers=workers, lanes=lanes
    )
    batcher.start()
    return batcher


def test_a_lane_at_its_limit_of_running_batches_waits_while_the_others_run() -> None:
    """A document lane that may have one batch running at a time while the first lane has work, on three
    workers: with a /predict batch running and one of its own, its next slice waits while the third worker
    takes the first lane's next request; it runs once the first has ended."""

    async def scenario() -> None:
        model = GatedModel()
        batcher = started_with_a_document_lane(model, workers=3)
        first = asyncio.ensure_future(batcher.submit(["p0"], 1))
        assert await asyncio.to_thread(model.started.acquire, True, 10)  # ["p0"] runs on one worker
        big = asyncio.ensure_future(batcher.submit(["d0", "d1"], 2.0, "analyze", costs=[1.0, 1.0]))
        assert await asyncio.to_thread(model.started.acquire, True, 10)  # ["d0"] on another, d1 waits
        live = asyncio.ensure_future(batcher.submit(["p1"], 1))
        assert await asyncio.to_thread(model.started.acquire, True, 10)  # ["p1"] on the third
        assert model.batches == [["p0"], ["d0"], ["p1"]]
        model.release.set()
        assert await first == ("batch1", ["P0"]) and await live == ("batch3", ["P1"])
        assert (await big)[1] == ["D0", "D1"]
        assert model.batches[3] == ["d1"]
        await batcher.drain()

    run(scenario)


def test_a_lane_alone_uses_every_worker_and_whole_batches() -> None:
    """With nothing on the first lane, the document lane's bounds do not hold: a request's slices go in one
    batch (past per_batch and slice_cost), and a second request runs beside it (past max_running)."""

    async def scenario() -> None:
        model = GatedModel()
        batcher = started_with_a_document_lane(model, workers=2)
        big = asyncio.ensure_future(batcher.submit(["d0", "d1"], 2.0, "analyze", costs=[1.0, 1.0]))
        assert await asyncio.to_thread(model.started.acquire, True, 10)
        other = asyncio.ensure_future(batcher.submit(["e0"], 1.0, "analyze"))
        assert await asyncio.to_thread(model.started.acquire, True, 10)  # running beside the first
        assert model.batches == [["d0", "d1"], ["e0"]]
        model.release.set()
        assert (await big)[1] == ["D0", "D1"] and (await other)[1] == ["E0"]
        await batcher.drain()

    run(scenario)
