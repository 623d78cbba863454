"""Mosec: a Rust HTTP front and Python worker processes; dynamic batching by requests.

BENCH_PORT=8000 python -m bench.stacks.mosec_server     # POST /inference
"""

from __future__ import annotations

import sys
from typing import Any

from mosec import Server, Worker

from bench.stacks import model, settings


class Sentiment(Worker):  # type: ignore[misc]  # mosec ships no type information
    def __init__(self) -> None:
        super().__init__()
        self.predictor = model.load()

    def forward(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # with max_batch_size > 1, Mosec hands over a list of decoded request bodies
        return model.score_requests(self.predictor, data)


if __name__ == "__main__":
    sys.argv += ["--port", str(settings.PORT), "--timeout", str(int(settings.TIMEOUT_S * 1000))]
    server = Server()
    server.append_worker(
        Sentiment, num=settings.WORKERS, max_batch_size=settings.MAX_BATCH, max_wait_time=int(settings.MAX_WAIT_MS)
    )
    server.run()
