"""Several server processes on one socket (SENTIMENT_PROCESSES > 1): a supervisor that keeps the service.

It builds on uvicorn's ``Multiprocess`` and changes what a service must not leave to chance:

- **Every process serves a proven model.** The model directory is copied, at start-up and at every swap,
  into a private, read-only place in the control directory (``proven_copy``) and its files are checked
  against the card's sha256; processes load that copy, never whatever the operator's directory holds later.
- **A swap is a transaction** (``handle_hup``): the process that took ``POST /admin/model`` has checked and
  copied the model and written a swap request; the supervisor replaces every process one by one, each
  replacement ready before its predecessor leaves (the requesting process last, so that it can answer), and
  writes the outcome. A replacement that does not become ready within SENTIMENT_SWAP_TIMEOUT_S undoes the
  swap: the processes already replaced are replaced again on the previous model, and the outcome says so.
- **A process that dies is replaced; one that cannot start does not stop the others** (``keep_subprocess_
  alive``): uvicorn stops the whole service when a replacement fails to start; here the slot is retried with
  back-off (1 s doubling to 60 s), each failure counted, while the other processes keep serving.
- **A process that dies while it is asked whether it serves is noticed at once** (``ask``): uvicorn's
  question waits the whole health-check timeout for an answer that cannot come, and the supervisor, with
  every replacement, stood still meanwhile (30 s by default).
- A dead process's live gauges (queue depth) are removed from the shared metrics, and ``processes.json`` says
  how many processes serve, for ``/readyz`` and ``/model``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from socket import socket
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from model_runtime import CARD_FILE, file_sha256, read_card

log = logging.getLogger("service")

CONTROL_DIR_ENV = "SENTIMENT_CONTROL_DIR"  # set by python -m service for its processes
MODEL_DIR_FILE = "model_dir"  # the proven copy new processes load
REQUEST_FILE = "swap-request.json"
STATUS_FILE = "processes.json"
PROVEN_DIR = "models"
FIRST_RETRY_S, LAST_RETRY_S = 1.0, 60.0
STARTING_PING_S = 0.2  # how long a starting replacement is asked whether it serves (it may be dying)


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old content or the new, never half of it."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    staged.replace(path)


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def proven_copy(model_dir: Path, control: Path) -> Path:
    """A private, read-only copy of the model directory's card and the files it lists, each checked against
    its sha256 after copying (the caller has loaded ``model_dir`` with every check first)."""
    card = read_card(model_dir)
    target = control / PROVEN_DIR / f"{file_sha256(model_dir / CARD_FILE)[:16]}-{time.time_ns()}"
    target.mkdir(parents=True)
    shutil.copyfile(model_dir / CARD_FILE, target / CARD_FILE)
    for name, entry in card.files.items():
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, target / name)
            if file_sha256(target / name) != entry.sha256:
                shutil.rmtree(target)
                raise RuntimeError(f"{name} changed while it was being copied")
    for path in target.iterdir():
        path.chmod(0o444)
    target.chmod(0o555)
    return target


def remove_proven_copies(control: Path, keep: Path) -> None:
    for path in (control / PROVEN_DIR).iterdir():
        if path != keep:
            path.chmod(0o755)
            shutil.rmtree(path, ignore_errors=True)


def set_model_dir(control: Path, model_dir: Path) -> None:
    """The proven copy that every process started from now on loads."""
    write_atomically(control / MODEL_DIR_FILE, str(model_dir))


def ask(process: Process, timeout: float) -> bool | None:
    """The process's answer to whether it serves (False: still starting), or None if it does not answer
    within ``timeout`` or dies first (then at once: its end of the pipe stays open in this process, so the
    pipe alone would wait out the timeout)."""
    try:
        process.parent_conn.send(b"ping")
        if process.parent_conn in wait([process.parent_conn, process.process.sentinel], timeout):
            return bool(process.parent_conn.recv())
        return None
    except (OSError, EOFError, pickle.UnpicklingError):  # the pipe broke: the process is gone
        return None


@dataclass
class Slot:
    """A process slot that does not serve: when to start its next replacement (infinity while one is
    starting), and the wait before the one after it if that fails too."""

    retry_at: float
    delay: float


class Supervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket], control: Path, swap_timeout_s: float) -> None:
        super().__init__(config, sockets)
        self.control, self.swap_timeout_s = control, swap_timeout_s
        self.waiting: dict[int, Slot] = {}
        # prometheus_client chooses where values live when it is imported, before python -m service named the
        # shared directory; choose again, so that this process's counters go there and the children report them.
        prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        self.replacements = Counter(
            "sentiment_process_replacements",
            "server processes started in place of one that died, by outcome (ok, failed: it could not start)",
            ["outcome"],
            registry=registry,
        )
        self.swaps = Counter(
            "sentiment_model_swaps", "model swaps by result (ok, failed)", ["result"], registry=registry
        )

    # ------------------------------------------------------------------------------------------ shutdown

    def handle_term(self) -> None:
        """SIGTERM: the supervisor's copy of the listening socket closes at once, so that a new connection
        is refused instead of waiting in the kernel's backlog for processes that will never accept it."""
        for sock in self.sockets:
            sock.close()
        super().handle_term()

    # ------------------------------------------------------------------------------------------ swaps

    def handle_hup(self) -> None:
        """A swap request (from ``POST /admin/model``), or an operator's SIGHUP: every process replaced on the
        requested (or the current) proven model, the outcome written for the requesting process."""
        request = read_json(self.control / REQUEST_FILE) or {}
        (self.control / REQUEST_FILE).unlink(missing_ok=True)
        previous = Path((self.control / MODEL_DIR_FILE).read_text())
        target = Path(request.get("model_dir") or previous)
        log.info("replacing every process", extra={"model_dir": str(target), "previous": str(previous)})

        def answer(outcome: str, reason: str) -> None:
            self.swaps.labels(outcome).inc()
            if "id" in request:
                write_json(self.control / f"swap-{request['id']}.json", {"outcome": outcome, "reason": reason})

        failure = self.replace_all(target, request.get("requester"), lambda: answer("ok", ""))
        if failure is None:
            log.info("swap done: every process serves the model", extra={"model_dir": str(target)})
            remove_proven_copies(self.control, keep=target)
            return
        log.error("swap failed, undoing it: %s", failure, extra={"model_dir": str(target)})
        undone = self.replace_all(previous, None, lambda: None)
        answer("failed", f"{failure}; {'the previous model serves again' if undone is None else undone}")

    def replace_all(self, model_dir: Path, last_pid: int | None, before_last_leaves: Callable[[], None]) -> str | None:
        """Replace each process by one started on ``model_dir``, ready before the old one leaves, the process
        ``last_pid`` last; ``before_last_leaves`` runs once every replacement is ready. None, or what failed."""
        set_model_dir(self.control, model_dir)
        order = sorted(range(len(self.processes)), key=lambda i: self.processes[i].pid == last_pid)
        for position, index in enumerate(order):
            if self.should_exit.is_set():
                return "the service is shutting down"
            replacement = Process(self.config, self.sockets)
            replacement.start()
            if not replacement.wait_until_ready(self.swap_timeout_s, self.should_exit):
                replacement.kill()
                replacement.join()
                return f"process {position + 1} of {len(order)} was not ready within {self.swap_timeout_s:g} s"
            if position == len(order) - 1:
                before_last_leaves()
            self._retire(self.processes[index])
            self.processes[index] = replacement
            self.waiting.pop(index, None)
            log.info("process replaced", extra={"pid": replacement.pid, "model_dir": str(model_dir)})
        return None

    # ------------------------------------------------------------------------------------------ supervision

    def keep_subprocess_alive(self) -> None:
        """Every half second: start the replacements that are due, ask every process whether it serves,
        replace the dead and the hung, and record how many serve."""
        if self.should_exit.is_set():
            return
        serving = 0
        for index, process in enumerate(self.processes):
            slot = self.waiting.get(index)
            if slot is not None and slot.retry_at != float("inf"):
                if time.monotonic() < slot.retry_at:
                    continue  # its process is dead; the next replacement is not due yet
                process = self.processes[index] = Process(self.config, self.sockets)
                process.start()
                slot.retry_at = float("inf")
            alive = process.process.is_alive()
            if slot is not None:  # a replacement starting: dead, ready, or not yet (a short question)
                if not alive:
                    self._replace_later(index, process)
                elif ask(process, STARTING_PING_S):
                    serving += 1
                    del self.waiting[index]
                    self.replacements.labels("ok").inc()
                    log.info("replacement process serving", extra={"pid": process.pid})
                continue
            state = ask(process, self.config.timeout_worker_healthcheck) if alive else None
            if state is None:  # dead, or hung past the health-check timeout
                self._replace_later(index, process)
            elif state:
                serving += 1
        status = {"configured": len(self.processes), "serving": serving}
        if read_json(self.control / STATUS_FILE) != status:
            write_json(self.control / STATUS_FILE, status)

    def _replace_later(self, index: int, process: Process) -> None:
        """A process died (or hung): at once if it was serving; after a back-off if it was a replacement
        that never started (the model or the host is failing; the others keep serving meanwhile)."""
        process.kill()
        process.join()
        if process.pid is not None:
            mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
        slot = self.waiting.get(index)
        if slot is None:
            self.waiting[index] = Slot(time.monotonic(), 0.0)
            log.error("process died; replacing it", extra={"pid": process.pid, "exit_code": process.exitcode})
            return
        self.replacements.labels("failed").inc()
        slot.delay = min(max(2 * slot.delay, FIRST_RETRY_S), LAST_RETRY_S)
        slot.retry_at = time.monotonic() + slot.delay
        log.error(
            "a replacement process could not start; the others keep serving",
            extra={"pid": process.pid, "exit_code": process.exitcode, "retry_in_s": slot.delay},
        )

    def _retire(self, process: Process) -> None:
        process.terminate()
        process.join()
        if process.pid is not None:
            mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def processes_status() -> Any:
    """How many processes are configured and how many serve, as the supervisor last wrote it (None with one
    process)."""
    control = os.environ.get(CONTROL_DIR_ENV)
    status = read_json(Path(control) / STATUS_FILE) if control else None
    return status if isinstance(status, dict) else None
