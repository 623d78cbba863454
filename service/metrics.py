"""Prometheus metrics, one registry per app instance (so several apps can live in one test process).

With several server processes (SENTIMENT_PROCESSES > 1) the supervisor sets PROMETHEUS_MULTIPROC_DIR:
every process writes its values there and a scrape of any process reports the sum over all of them
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from model_runtime import Language

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sentiment_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "sentiment_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait_seconds = Histogram(
            "sentiment_queue_wait_seconds",
            "time the oldest request of a batch waited before inference",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "sentiment_inference_seconds",
            "time to tokenize and run one server-side batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "sentiment_batch_size", "texts per server-side batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "sentiment_queue_depth", "texts waiting for a batch", registry=r, multiprocess_mode="livesum"
        )
        self.texts_scored = Counter("sentiment_texts_scored", "texts scored", registry=r)
        self.texts_by_language = Counter(
            "sentiment_texts_by_language",
            "texts scored (an /analyze document is one, read whole), by whether the model supports the language "
            "they appear to be in: yes, no, or unknown (too short to tell)",
            ["supported"],
            registry=r,
        )
        self.model_swaps = Counter(
            "sentiment_model_swaps", "model swaps by result (ok, failed)", ["result"], registry=r
        )
        self.rejected = Counter(
            "sentiment_rejected_requests", "requests refused before inference", ["reason"], registry=r
        )
        # Jobs live in the shared store: every process reports the same counts, so the gauges take the latest.
        self.jobs = Gauge(
            "sentiment_jobs", "jobs in the store by state", ["state"], registry=r, multiprocess_mode="mostrecent"
        )
        self.job_queue = Gauge(
            "sentiment_job_queue_length",
            "jobs waiting or running",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.job_rows = Counter("sentiment_job_rows_scored", "rows of jobs scored (a failed row too)", registry=r)

    def count_languages(self, languages: Iterable[Language]) -> None:
        """Scored texts (or documents) by whether the model supports the language they appear to be in."""
        counts = {"yes": 0, "no": 0, "unknown": 0}
        for language in languages:
            counts["unknown" if language.code is None else "yes" if language.supported else "no"] += 1
        for supported, count in counts.items():
            if count:
                self.texts_by_language.labels(supported).inc(count)

    def observe_jobs(self, by_state: dict[str, int]) -> None:
        for state, count in by_state.items():
            self.jobs.labels(state).set(count)
        self.job_queue.set(by_state.get("queued", 0) + by_state.get("running", 0))

    def observe_batch(self, texts: int, inference_seconds: float, queue_wait_seconds: float) -> None:
        self.batch_size.observe(texts)
        self.inference_seconds.observe(inference_seconds)
        self.queue_wait_seconds.observe(queue_wait_seconds)
        self.texts_scored.inc(texts)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            every_process = CollectorRegistry()
            MultiProcessCollector(every_process)  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped
            return generate_latest(every_process)
        return generate_latest(self.registry)
