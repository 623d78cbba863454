"""BentoML: its HTTP server and runner workers; adaptive batching over the texts of many requests.

BENCH_PORT=8000 bentoml serve bench.stacks.bentoml_service:Sentiment --port 8000     # POST /predict
"""

from __future__ import annotations

from typing import Any

import bentoml

from bench.stacks import model, settings


@bentoml.service(workers=settings.WORKERS, traffic={"timeout": settings.TIMEOUT_S})
class Sentiment:
    def __init__(self) -> None:
        self.predictor = model.load()

    # batchable: BentoML concatenates the ``texts`` lists of waiting requests (up to max_batch_size texts)
    # and splits the answers back; max_latency_ms is high so it never refuses for latency.
    @bentoml.api(  # type: ignore[untyped-decorator]  # bentoml ships no type information
        batchable=True,
        max_batch_size=settings.MAX_BATCH,
        max_latency_ms=int(settings.TIMEOUT_S * 1000),
    )
    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return model.score(self.predictor, texts)
