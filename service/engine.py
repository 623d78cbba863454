"""The inference engine: the one owner of the model in service, readiness and draining. It holds the
batcher and the explanation lane, admission by cost (``service.admission``), warm-up, model swaps and the
drain, and knows no HTTP.

One ``Engine`` per server process, made with the app (``state`` "starting"); ``await engine.start(model)``
builds the batcher with the worker count of ``plan_threads`` and starts the warm-up (which also measures
the rate that admission budgets by); ``state`` turns "ready" once warm; ``await engine.swap(path)``
loads, checks and warms another model directory and then serves it; ``engine.begin_draining()`` turns
readiness off at once (SIGTERM, "draining"); ``await engine.drain()`` refuses new work and finishes what
was accepted. The web layer only asks (``state``, ``ready``, ``model``) and submits work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model_runtime import CUDA_PROVIDER, Explanation, Language, Prediction, Predictor, available_cpus, explain
from service.admission import Admission
from service.batcher import Batcher, BatchStats, NotAcceptingError
from service.budget import RateMeter
from service.config import Settings
from service.lanes import batch_lanes, explain_budget, most_per_request
from service.metrics import Metrics
from service.side_lane import JobCancelled, SideLane

log = logging.getLogger("service")

# Batches run in parallel on a GPU host: two keep the GPU fed while the other tokenizes (README, Performance).
GPU_INFERENCE_WORKERS = 2
# Longest an explanation waits, per model run, for queued predictions to go first. Short: an explanation is
# hundreds of runs, and under steady /predict load something is always queued (20 ms starved explanations).
EXPLAIN_YIELD_S = 0.002


@dataclass(frozen=True)
class ThreadPlan:
    workers: int  # batches run in parallel, each on its own thread
    intra_op_threads: int  # onnxruntime threads inside each run


def plan_threads(settings: Settings, provider: str) -> ThreadPlan:
    """The one place that sizes inference: as set, else one single-threaded worker per available CPU on
    CPU (all workers together use the CPUs this process may use, not the host's), GPU_INFERENCE_WORKERS
    on CUDA."""
    default_workers = GPU_INFERENCE_WORKERS if provider == CUDA_PROVIDER else available_cpus()
    workers = settings.inference_workers or default_workers
    threads = settings.intra_op_threads or max(1, available_cpus() // workers)
    return ThreadPlan(workers, threads)


def load_model(settings: Settings, model_dir: Path | None = None) -> Predictor:
    """The model of ``settings`` (or ``model_dir``); raises ModelLoadError with one line on a bad directory."""
    plan = plan_threads(settings, CUDA_PROVIDER if settings.provider == "cuda" else "cpu")
    return Predictor.load(
        model_dir or settings.model_dir,
        provider=settings.provider,
        intra_op_threads=plan.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        spin=settings.ort_spin,
    )


ToScore = tuple[str, bool]  # one text as the batcher carries it, and whether its answer says its language


class NotReadyError(Exception):
    """The engine has no warm model yet, or is draining: the client may retry (503)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._model: Predictor | None = None
        self.model_dir = Path(settings.model_dir)
        self.warmed_up = False
        self.draining = False
        self._batcher: Batcher[ToScore, Predictor, Prediction] | None = None
        self._explain_lane: SideLane | None = None
        self._model_runs: ThreadPoolExecutor | None = None
        self._batches_running = 0
        self._batches_lock = threading.Lock()
        self._warmup: asyncio.Task[None] | None = None
        self._swap_lock = asyncio.Lock()
        self.rate = RateMeter(1)
        self.explain_rate = RateMeter(1)
        self.admission: Admission | None = None

    # ---------------------------------------------------------------------------------------- state

    @property
    def state(self) -> str:
        """ "starting" (loading or warming up), "ready", or "draining" (SIGTERM: answers what it accepted)."""
        if self.draining:
            return "draining"
        return "ready" if self.warmed_up else "starting"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def model(self) -> Predictor:
        """The model in service (loaded, warm or not); NotReadyError before start."""
        if self._model is None:
            raise NotReadyError(self.state)
        return self._model

    def require_ready(self) -> Admission:
        """The admission of an engine that takes work: ready, or draining until ``drain()`` stops its queue
        (a request the server accepted after SIGTERM, before it stopped accepting, is still answered);
        NotReadyError while starting."""
        if not self.warmed_up or self.admission is None:
            raise NotReadyError(self.state)
        return self.admission

    @property
    def batcher(self) -> Batcher[ToScore, Predictor, Prediction]:
        if self._batcher is None:
            raise NotReadyError(self.state)
        return self._batcher

    async def start(self, model: Predictor, wait_for_warm_up: bool = False) -> None:
        """Serve ``model``: start the batcher, the explanation lane and the warm-up (awaited when asked: with
        several processes on one socket, a process must accept nothing until warm, or a client could get a
        503 while its siblings are ready)."""
        s = self.settings
        self._model, self.model_dir = model, Path(model.model_dir)
        rate = self.rate = RateMeter(plan_threads(s, model.provider).workers)
        # A batch that runs alone spreads its length groups over one thread per worker, so that one 32-text
        # request uses every core, not one; batches running side by side run their groups on their own
        # thread, as the workers already share the cores. The groups are the same, so are the answers.
        self._model_runs = ThreadPoolExecutor(max_workers=rate.workers, thread_name_prefix="model-run")
        stats = BatchStats(on_batch=self._observe_batch, on_depth=self.metrics.queue_depth.set)
        queue, lanes = batch_lanes(s, rate)
        self._batcher = Batcher(self._run_batch, s.max_batch_size, s.max_wait_ms, queue, stats, rate.workers, lanes)
        self._batcher.start()
        # The explanation lane measures its own rate (it shares the CPU with /predict): its budget, its
        # Retry-After (never beyond the budget) and each explanation's deadline follow what it really achieves.
        lane_rate = self.explain_rate = RateMeter(1)
        lane = explain_budget(s, lane_rate)
        self._explain_lane = SideLane(lane, lane_rate, "explain")
        budgets = {"predict": queue, "analyze": lanes["analyze"].budget, "explain": lane}
        self.admission = Admission(s.max_concurrent_requests, budgets, most_per_request(s, model.max_tokens))
        self.admission.max_tokens = model.max_tokens
        self._warmup = asyncio.create_task(self._warm_up(), name="warm-up")
        if wait_for_warm_up:
            await asyncio.shield(self._warmup)

    def deadline_s(self, lane: str, texts: list[str]) -> float:
        """How long a request on ``lane`` may wait for its answer: SENTIMENT_REQUEST_TIMEOUT_S, and for an
        explanation also its own run at the lane's measured rate (an accepted explanation completes)."""
        if lane != "explain" or self._explain_lane is None:
            return self.settings.request_timeout_s
        cost = sum(map(self.explain_cost, texts))
        return self.settings.request_timeout_s + self._explain_lane.expected_seconds(cost)

    def explain_cost(self, text: str) -> float:
        tokens = self.require_ready().text_cost(text)
        return (min(tokens, self.settings.max_explain_tokens) + 1) * tokens

    # ---------------------------------------------------------------------------------------- work

    async def predict(
        self, texts: list[str], languages: bool = True, lane: str = "predict"
    ) -> tuple[Predictor, list[Prediction]]:
        """Predictions in order (each with its text's language unless not ``languages``), and the model that
        made them (no texts: none, by the model in service), queued on ``lane`` ("predict"; "analyze": in
        slices that give way to /predict's requests; "jobs": in slices that run only when no other lane waits)."""
        if not texts:
            return self.model, []
        costs = list(map(self.require_ready().text_cost, texts))
        return await self.batcher.submit([(text, languages) for text in texts], sum(costs), lane, costs)

    def language(self, text: str) -> Language:
        """The language ``text`` appears to be in, and whether the model in service supports it."""
        return self.model.language(text)

    async def explain(self, texts: list[str]) -> tuple[Predictor, list[Explanation]]:
        """Explanations on their own lane, which gives way to queued predictions between model runs."""
        if self._explain_lane is None:  # draining, it still answers what it accepted until drain() closes the lane
            raise NotAcceptingError
        predictor, s, batcher = self.model, self.settings, self.batcher

        def run(cancelled: threading.Event) -> list[Explanation]:
            def give_way_then_run(ids: list[list[int]]) -> npt.NDArray[np.float32]:
                if cancelled.is_set():  # the request has ended: stop here, between two model runs
                    raise JobCancelled
                deadline = time.perf_counter() + EXPLAIN_YIELD_S
                while batcher.depth and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                return predictor.probabilities(ids)

            return [explain(predictor, t, s.max_explain_tokens, s.max_batch_tokens, give_way_then_run) for t in texts]

        return predictor, await self._explain_lane.call(run, sum(map(self.explain_cost, texts)))

    def _run_batch(self, batch: list[ToScore]) -> tuple[Predictor, list[Prediction]]:
        predictor = self.model  # the model a batch starts on is the one it finishes on
        s = self.settings
        with self._batches_lock:
            self._batches_running += 1
            alone = self._batches_running == 1
        try:
            spread = self._model_runs.map if alone and self._model_runs else map
            texts, languages = [text for text, _ in batch], [wanted for _, wanted in batch]
            predictions = predictor.predict(texts, s.max_batch_tokens, s.max_batch_size, spread, languages)
            self.metrics.count_languages(p.language for p in predictions if p.language is not None)
            return predictor, predictions
        finally:
            with self._batches_lock:
                self._batches_running -= 1

    def _observe_batch(self, texts: int, cost: float, seconds: float, waited: float) -> None:
        self.rate.observe(cost, seconds)
        self.metrics.observe_batch(texts, seconds, waited)

    # ---------------------------------------------------------------------------------------- lifecycle

    async def swap(self, model_dir: Path | None = None) -> Predictor:
        """Load ``model_dir`` (default: the directory in service now, again) with the start-up checks, warm
        it, then serve it. Requests already in a batch finish on the old model. A bad directory raises
        ModelLoadError and the old model keeps serving."""
        async with self._swap_lock:
            target = Path(model_dir or self.model_dir)
            try:
                candidate = await asyncio.to_thread(load_model, self.settings, target)
                await asyncio.to_thread(candidate.warm_up)
            except Exception:
                self.metrics.model_swaps.labels("failed").inc()
                raise
            previous, self._model, self.model_dir = self.model, candidate, target
            if self.admission is not None:
                self.admission.max_tokens = candidate.max_tokens
            self.metrics.model_swaps.labels("ok").inc()
            names = {
                "previous": f"{previous.name} {previous.version}",
                "model": f"{candidate.name} {candidate.version}",
            }
            log.info("model swapped", extra={**names, "model_dir": str(target)})
            return candidate

    def begin_draining(self) -> None:
        """Readiness goes 503 at once; requests already accepted still get their answers."""
        self.draining = True
        log.info("readiness off: shutting down")

    async def drain(self) -> None:
        self.draining = True
        if self._warmup is not None:
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        if self._batcher is not None:
            await self._batcher.drain()
        if self._model_runs is not None:
            self._model_runs.shutdown(wait=False)  # the batches that used it have finished
        if self._explain_lane is not None:
            await asyncio.to_thread(self._explain_lane.drain)
        log.info("drained; shutting down")

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        try:
            for _ in range(self.settings.warmup_runs):
                await asyncio.to_thread(self.model.warm_up)
            await asyncio.to_thread(self._measure_rate)
        except Exception:  # readiness stays 503, and the log says why
            log.exception("warm-up failed; the service will not report ready")
            return
        self.warmed_up = True
        warmup_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "ready", extra={"warmup_ms": warmup_ms, "provider": self.model.provider, "rate": round(self.rate.value)}
        )

    def _measure_rate(self) -> None:
        """One worker's speed on a typical batch (32 texts of 256 tokens), times the workers."""
        texts, tokens = 32, 256
        started = time.perf_counter()
        self.model.probabilities([[2] * tokens] * texts)
        self.rate.value = texts * (tokens + 1) / (time.perf_counter() - started) * self.rate.workers
        self.explain_rate.value = self.rate.per_worker()  # until explanations have measured their own
