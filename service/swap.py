"""Model swaps across processes, and the signals that trigger them.

One process (``SENTIMENT_PROCESSES=1``) swaps in place (``Engine.swap``), on ``POST /admin/model`` or on
SIGHUP (the directory in service, read again). With several processes, uvicorn's supervisor already
answers SIGHUP with a rolling restart (each new process ready before the old one leaves), so a swap
writes the directory to serve into the control directory the supervisor shares with its processes, and
signals the supervisor; every new process starts on that directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from service.engine import Engine, load_model

log = logging.getLogger("service")
CONTROL_DIR_ENV = "SENTIMENT_CONTROL_DIR"  # set by the supervisor (python -m service) for its processes
MODEL_DIR_FILE = "model_dir"


def controlled_model_dir() -> Path | None:
    """The model directory the last multi-process swap asked for, if any."""
    control = os.environ.get(CONTROL_DIR_ENV)
    path = Path(control) / MODEL_DIR_FILE if control else None
    return Path(path.read_text().strip()) if path and path.exists() else None


async def rolling_swap(engine: Engine, model_dir: Path | None) -> None:
    """Check ``model_dir`` here (raises ModelLoadError), record it for the next processes, and ask the
    supervisor to replace every process."""
    target = Path(model_dir or engine.model_dir).resolve()
    await asyncio.to_thread(load_model, engine.settings, target)  # the same checks, before anything changes
    control = os.environ.get(CONTROL_DIR_ENV)
    if not control:
        raise RuntimeError(f"several processes but no {CONTROL_DIR_ENV}: not started by python -m service")
    staged = Path(control) / (MODEL_DIR_FILE + ".new")
    staged.write_text(str(target))
    staged.replace(Path(control) / MODEL_DIR_FILE)  # atomic: a starting process reads the old or the new path
    engine.metrics.model_swaps.labels("ok").inc()
    os.kill(os.getppid(), signal.SIGHUP)


def install_signal_handlers(engine: Engine) -> None:
    """SIGHUP swaps the model in place (read again from its directory); SIGTERM turns readiness off before
    the server's own handler starts the drain. Signals reach only the main thread: elsewhere (tests
    driving the app in a thread) nothing is installed."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(engine)))
    except (RuntimeError, ValueError):
        return
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: object) -> None:
        engine.begin_draining()
        if callable(previous):
            previous(signum, frame)  # type: ignore[arg-type]  # the server's handler takes a frame or None

    signal.signal(signal.SIGTERM, terminate)


async def _reload(engine: Engine) -> None:
    try:
        await engine.swap()
    except Exception as exc:  # the old model keeps serving; the log says why
        log.error("SIGHUP: model not swapped, the old one still serves: %s", exc)
