"""``python -m service``: start the HTTP server with the settings from ``SENTIMENT_*`` variables."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from model_runtime import ModelLoadError
from service.app import create_app
from service.config import Settings
from service.engine import load_model
from service.logs import configure_logging
from service.server import GuardedHttpToolsProtocol, Server
from service.supervisor import CONTROL_DIR_ENV, Supervisor, proven_copy, set_model_dir
from service.swap import controlled_model_dir

log = logging.getLogger("service")


def app_from_environment() -> FastAPI:
    """The app of one of several server processes (SENTIMENT_PROCESSES > 1); its lifespan loads the model,
    from the directory the last model swap asked for, if any."""
    settings = Settings()
    swapped = controlled_model_dir()
    if swapped is not None:
        settings = settings.model_copy(update={"model_dir": swapped})
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
        log.error("cannot start: %s: %s", settings.model_dir, exc)
        print(f"error: cannot start: {settings.model_dir}: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "http": GuardedHttpToolsProtocol,
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "server_header": False,
        "lifespan": "on",
    }
    if several:
        # service.supervisor.Supervisor: the processes share the listening socket and load a private, proven
        # copy of the model; one that dies is replaced (one that cannot start is retried with back-off while the
        # others serve); a swap replaces them all or none; SIGTERM drains them all. Their metrics meet in the
        # control directory, new for this run, so that /metrics sums every process (service/metrics.py).
        del predictor
        with tempfile.TemporaryDirectory(prefix="sentiment-control-") as control:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = control
            os.environ[CONTROL_DIR_ENV] = control
            set_model_dir(Path(control), proven_copy(Path(settings.model_dir), Path(control)))
            config = uvicorn.Config(
                "service.__main__:app_from_environment",
                factory=True,
                workers=settings.processes,
                timeout_worker_healthcheck=int(settings.health_check_timeout_s),
                **options,
            )
            Supervisor(config, [config.bind_socket()], Path(control), settings.swap_timeout_s).run()
        return 0
    # SIGTERM turns /readyz to 503 at once (service.swap.install_signal_handlers, from the lifespan); uvicorn then
    # stops accepting, lets in-flight requests finish (up to SENTIMENT_SHUTDOWN_GRACE_S) and the lifespan drains.
    server = Server(uvicorn.Config(create_app(settings, predictor=predictor), **options))
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    raise SystemExit(main())
