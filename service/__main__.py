"""``python -m service``: start the HTTP server with the settings from ``SENTIMENT_*`` variables."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from model_runtime import ModelLoadError
from service.app import create_app
from service.config import Settings
from service.engine import load_model
from service.logs import configure_logging

log = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, turn /readyz to 503 at once; uvicorn then stops accepting connections and
    lets in-flight requests finish (up to SENTIMENT_SHUTDOWN_GRACE_S) before the lifespan drains the queue."""

    def __init__(self, config: uvicorn.Config, on_exit: object) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()  # type: ignore[operator]
        super().handle_exit(sig, frame)


def app_from_environment() -> FastAPI:
    """The app of one of several server processes (SENTIMENT_PROCESSES > 1); its lifespan loads the model."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    several = settings.processes > 1
    try:
        # Load (and check) the model before listening: a bad model directory never gives a half-alive server.
        # With several processes each loads its own copy; this one only checks the directory, on the CPU, so
        # that the supervising process holds no GPU memory.
        predictor = load_model(settings.model_copy(update={"provider": "cpu"}) if several else settings)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "server_header": False,
        "lifespan": "on",
    }
    if several:
        # uvicorn's supervisor: the processes share the listening socket, one that dies is replaced, SIGTERM
        # drains them all (each finishes its accepted requests, then its queue). Their metrics meet in one
        # directory, emptied first, so that /metrics sums every process (service/metrics.py).
        del predictor
        with tempfile.TemporaryDirectory(prefix="sentiment-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            uvicorn.run("service.__main__:app_from_environment", factory=True, workers=settings.processes, **options)
        return 0
    app = create_app(settings, predictor=predictor)
    server = DrainingServer(uvicorn.Config(app, **options), on_exit=app.state.service.begin_draining)
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    raise SystemExit(main())
