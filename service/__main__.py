"""``python -m service``: start the HTTP server with the settings from ``SENTIMENT_*`` variables."""

from __future__ import annotations

import logging
import sys
from types import FrameType

import uvicorn

from service.app import create_app, load_predictor
from service.config import Settings
from service.logs import configure_logging
from service.predictor import ModelLoadError

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


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    try:
        # Load (and check) the model before listening: a bad model directory never gives a half-alive server.
        predictor = load_predictor(settings)
    except ModelLoadError as exc:
        log.error("cannot start: %s", exc)
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, predictor=predictor)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=settings.shutdown_grace_s, server_header=False,
                            lifespan="on")
    server = DrainingServer(config, on_exit=app.state.service.begin_draining)
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    raise SystemExit(main())
