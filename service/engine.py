"""The inference engine: the loaded model, the batcher, warm-up, readiness and drain. It knows no HTTP.

One ``Engine`` per server process. Its lifetime: ``await engine.start()`` loads nothing (the model is
loaded by ``load_model`` before the server listens, or in the lifespan of a worker process), builds the
batcher with the worker count of ``plan_threads`` and starts the warm-up; ``engine.ready`` turns true
once warm; ``engine.begin_draining()`` turns readiness off at once (SIGTERM); ``await engine.drain()``
refuses new work and finishes what was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from model_runtime import CUDA_PROVIDER, Explanation, Prediction, Predictor, available_cpus, explain
from service.batcher import Batcher, BatchStats
from service.config import Settings
from service.metrics import Metrics

log = logging.getLogger("service")

# Batches run in parallel on a GPU host: two keep the GPU fed while the other tokenizes (README, Performance).
GPU_INFERENCE_WORKERS = 2


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


def load_model(settings: Settings) -> Predictor:
    """The model of ``settings`` (raises ModelLoadError with one line on a bad directory)."""
    expected = CUDA_PROVIDER if settings.provider == "cuda" else "cpu"
    plan = plan_threads(settings, expected)
    return Predictor.load(
        settings.model_dir,
        provider=settings.provider,
        intra_op_threads=plan.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        spin=settings.ort_spin,
    )


class Engine:
    def __init__(self, settings: Settings, predictor: Predictor, metrics: Metrics) -> None:
        self.settings = settings
        self.predictor = predictor
        self.metrics = metrics
        self.warmed_up = False
        self.draining = False
        self._batcher: Batcher | None = None
        self._warmup: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.warmed_up and not self.draining

    @property
    def batcher(self) -> Batcher:
        if self._batcher is None:
            raise RuntimeError("the engine has not been started")
        return self._batcher

    async def start(self, wait_for_warm_up: bool = False) -> None:
        """Start the batcher and the warm-up (awaited when asked: with several processes on one socket, a
        process must accept nothing until warm, or a client could get a 503 while its siblings are ready)."""
        settings, predictor = self.settings, self.predictor
        plan = plan_threads(settings, predictor.provider)

        def predict(texts: list[str]) -> list[Prediction]:
            return predictor.predict(texts, settings.max_batch_tokens, settings.max_batch_size)

        stats = BatchStats(on_batch=self.metrics.observe_batch, on_depth=self.metrics.queue_depth.set)
        self._batcher = Batcher(
            predict, settings.max_batch_size, settings.max_wait_ms, settings.max_queue, stats, workers=plan.workers
        )
        self._batcher.start()
        self._warmup = asyncio.create_task(self._warm_up(), name="warm-up")
        if wait_for_warm_up:
            await asyncio.shield(self._warmup)

    def begin_draining(self) -> None:
        """Readiness goes 503 at once; requests already accepted still get their answers."""
        self.draining = True

    async def drain(self) -> None:
        self.draining = True
        if self._warmup is not None:
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        if self._batcher is not None:
            await self._batcher.drain()
        log.info("drained; shutting down")

    async def predict(self, texts: list[str]) -> list[Prediction]:
        return await self.batcher.submit(texts)

    async def explain(self, texts: list[str]) -> list[Explanation]:
        predictor, settings = self.predictor, self.settings

        def run() -> list[Explanation]:
            return [explain(predictor, t, settings.max_explain_tokens, settings.max_batch_tokens) for t in texts]

        return await self.batcher.call(run, len(texts))

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        try:
            for _ in range(self.settings.warmup_runs):
                await asyncio.to_thread(self.predictor.warm_up)
        except Exception:  # readiness stays 503, and the log says why
            log.exception("warm-up failed; the service will not report ready")
            return
        self.warmed_up = True
        log.info(
            "ready",
            extra={
                "warmup_ms": round((time.perf_counter() - started) * 1000, 1),
                "provider": self.predictor.provider,
            },
        )
