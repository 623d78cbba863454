"""LitServe: FastAPI front, worker processes fed through queues; dynamic batching by requests.

BENCH_PORT=8000 python -m bench.stacks.litserve_server     # POST /predict
"""

from __future__ import annotations

from typing import Any

import litserve as ls

from bench.stacks import model, settings


class Sentiment(ls.LitAPI):  # type: ignore[misc]  # litserve ships no type information
    def setup(self, device: str) -> None:
        self.predictor = model.load()

    # Left unannotated on purpose: LitServe reads the annotation to choose how to parse the body; without
    # one it hands over request.json().
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return inputs

    def predict(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return model.score_requests(self.predictor, bodies)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


if __name__ == "__main__":
    api = Sentiment(max_batch_size=settings.MAX_BATCH, batch_timeout=settings.MAX_WAIT_MS / 1000)
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=settings.WORKERS,
        timeout=settings.TIMEOUT_S,
        fast_queue=True,  # ZeroMQ between the front and the workers: LitServe's documented faster path
    )
    server.run(port=settings.PORT, generate_client_file=False)
