"""Ray Serve: an HTTP proxy actor in front of replica actors; dynamic batching with ``@serve.batch``.

BENCH_PORT=8000 python -m bench.stacks.rayserve_server     # POST /predict
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray
from ray import serve
from starlette.requests import Request

from bench.stacks import model, settings


@serve.deployment(
    num_replicas=settings.WORKERS,
    max_ongoing_requests=4096,  # the default (5) would queue 59 of 64 clients in the proxy
    ray_actor_options={"num_cpus": 0},
)
class Sentiment:
    def __init__(self) -> None:
        self.predictor = model.load()

    @serve.batch(max_batch_size=settings.MAX_BATCH, batch_wait_timeout_s=settings.MAX_WAIT_MS / 1000)
    async def score(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return model.score_requests(self.predictor, bodies)

    async def __call__(self, request: Request) -> dict[str, Any]:
        return await self.score(await request.json())


if __name__ == "__main__":
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": settings.PORT})
    serve.run(Sentiment.bind(), route_prefix="/predict")  # type: ignore[attr-defined]  # added by the decorator
    while True:
        time.sleep(3600)
