"""Model swaps, and the signals that trigger them.

One process (``SENTIMENT_PROCESSES=1``) swaps in place (``Engine.swap``), on ``POST /admin/model`` or on
SIGHUP (the directory in service, read again). With several processes a swap is a transaction across them
(``rolling_swap``): this process checks the directory whole and copies it into a private, proven place,
writes a swap request and signals the supervisor, which replaces every process (this one last) or none
(``service.supervisor``); the answer waits for its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from model_runtime import Predictor
from service.engine import Engine, load_model
from service.supervisor import CONTROL_DIR_ENV, MODEL_DIR_FILE, REQUEST_FILE, proven_copy, read_json, write_json

log = logging.getLogger("service")
OUTCOME_POLL_S = 0.05


class SwapInProgress(Exception):
    """Another swap is under way (409)."""


@dataclass(frozen=True)
class SwapOutcome:
    ok: bool
    reason: str  # why it failed, and that the previous model serves again
    model: Predictor  # the model checked here (every process now serves its proven copy, if ok)


def controlled_model_dir() -> Path | None:
    """The proven model directory every process of this service loads, if several are supervised."""
    control = os.environ.get(CONTROL_DIR_ENV)
    path = Path(control) / MODEL_DIR_FILE if control else None
    return Path(path.read_text().strip()) if path and path.exists() else None


async def rolling_swap(engine: Engine, model_dir: Path | None) -> SwapOutcome:
    """Check ``model_dir`` (raises ModelLoadError: nothing changes), copy it into a private proven place,
    and have the supervisor replace every process on it; the outcome, once every process serves it or the
    swap has been undone (within SENTIMENT_SWAP_TIMEOUT_S per process)."""
    control = os.environ.get(CONTROL_DIR_ENV)
    if not control:
        raise RuntimeError(f"several processes but no {CONTROL_DIR_ENV}: not started by python -m service")
    target = Path(model_dir or engine.model_dir)
    with _only_swap(Path(control)):
        candidate = await asyncio.to_thread(load_model, engine.settings, target)  # every check, first
        proven = await asyncio.to_thread(proven_copy, target, Path(control))
        swap_id = uuid.uuid4().hex
        write_json(Path(control) / REQUEST_FILE, {"id": swap_id, "model_dir": str(proven), "requester": os.getpid()})
        os.kill(os.getppid(), signal.SIGHUP)
        outcome_file = Path(control) / f"swap-{swap_id}.json"
        # Every process replaced (and, on failure, replaced again): the longest a supervisor can take.
        deadline = (
            asyncio.get_running_loop().time() + 2 * engine.settings.swap_timeout_s * engine.settings.processes + 30
        )
        while (outcome := read_json(outcome_file)) is None:
            if asyncio.get_running_loop().time() > deadline:
                return SwapOutcome(False, "the supervisor gave no outcome in time; see its log", candidate)
            await asyncio.sleep(OUTCOME_POLL_S)
        outcome_file.unlink(missing_ok=True)
    log.info("swap %s", outcome["outcome"], extra={"model_dir": str(target), "reason": outcome["reason"]})
    return SwapOutcome(outcome["outcome"] == "ok", outcome["reason"], candidate)


@contextlib.contextmanager
def _only_swap(control: Path) -> Iterator[None]:
    """One swap at a time across the processes (a lock file in the control directory)."""
    with (control / "swap.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SwapInProgress from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
