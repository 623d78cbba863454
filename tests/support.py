"""Helpers the tests share (one module; no test module imports another): paths, the tiny model's training
settings, real server processes, readiness waits and metric reads."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from model_runtime.contract import SHIPPED_MODEL_DIR
from tests import CACHE, ROOT
from training.config import TrainConfig
from training.model import ModelConfig

__all__ = [
    "ARTIFACTS",
    "BINARY_MODEL",
    "CACHE",
    "ROOT",
    "SHIPPED_MODEL",
    "TINY_CONFIG",
    "Load",
    "MadeOnce",
    "artifact_dir",
    "gauge",
    "launch",
    "metric",
    "pick_free_port",
    "postgres_server",
    "rss_mb",
    "start_server",
    "steady_load",
    "stop_server",
    "until",
    "wait_ready",
    "wait_until_ready",
]

# The made_once fixture (conftest.py): made_once(name, make) -> a copy of what make(path) wrote, made once per recipe
MadeOnce = Callable[[str, Callable[[Path], None]], Path]
SHIPPED_MODEL = SHIPPED_MODEL_DIR
BINARY_MODEL = SHIPPED_MODEL_DIR.parent / "sentiment-bilstm-3.0.0"  # negative / positive, kept beside the default
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))

# About 10 s of training on 2,000 texts of every source; reaches ~0.75 validation accuracy.
TINY_CONFIG = TrainConfig(
    epochs=4,
    batch_size=32,
    max_samples=2000,
    vocab_size=6000,
    pieces=600,
    min_frequency=2,
    max_tokens=160,
    seed=7,
    learning_rate=8e-3,
    class_balance=1.0,
    model=ModelConfig(embedding_dim=32, hidden_size=24, num_layers=1, dropout=0.2, word_prior=True),
    pretrain_epochs=1,  # the shipped recipe does not pretrain; one epoch keeps the option tested
)


def pick_free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def artifact_dir(name: str) -> Path:
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_server(model_dir: Path, port: int, log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """``python -m service`` on loopback; its log (JSON lines on stderr) goes to ``log`` (a file, so a
    busy server never blocks on a full pipe). Its job store is its own (SENTIMENT_JOBS_DIR, a fresh directory)
    unless ``env`` names one: servers of other tests never run each other's jobs."""
    environment = {
        **os.environ,
        "SENTIMENT_JOBS_DIR": tempfile.mkdtemp(prefix="sentiment-jobs-"),  # its own job store, unless given
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_HOST": "127.0.0.1",
        "SENTIMENT_PROVIDER": "cpu",
        **env,
    }
    with open(log or os.devnull, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=stderr
        )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def launch(model_dir: Path, log: Path | None = None, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A ready server on a free loopback port: its base URL and process (stop it with stop_server)."""
    port = pick_free_port()
    process = start_server(model_dir, port, log, **env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, process)
    return base, process


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert process.poll() is None, f"server exited with {process.returncode}"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not become ready")


def wait_until_ready(client: TestClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "service never became ready"
        time.sleep(0.02)


def until(condition: Callable[[], bool], seconds: float = 60, what: Callable[[], str] = lambda: "") -> None:
    """Poll ``condition`` until it holds; after ``seconds``, fail with ``what()`` (a server's log, say)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def gauge(metrics_text: str, pattern: str) -> float:
    """The value a ``^name (\\S+)$`` pattern finds in a /metrics text (the metric must be there)."""
    match = re.search(pattern, metrics_text, re.M)
    assert match is not None, pattern
    return float(match.group(1))


UNIT_TEXTS = [
    "A wonderful film, I loved every minute.",
    "Dull and far too long.",
    "The battery died after two days.",
    "Great service, friendly staff, will come back!",
    "not bad at all",
    "I hate Mondays.",
    "Terrible food, rude waiter :(",
    "Stocks rallied as investors cheered strong earnings.",
    "An amazeballs ending 😀",
    "meh.",
]


def make_model_dir(path: Path, name: str = "unit-bilstm", version: str = "0.0.1", seed: int = 0) -> Path:
    """A real, small, untrained model directory in about a second: tokenizer built from UNIT_TEXTS with the
    word vectors, a seeded network, the exported and proven ONNX graph and a card (no metrics)."""
    import torch

    from model_runtime import FileEntry, ModelCard, write_card
    from model_runtime.contract import MODEL_FILE, TOKENIZER_FILE, file_sha256
    from training.data import Example
    from training.export import export_model
    from training.tokenizer import train_tokenizer
    from training.train import new_model
    from training.vectors import load_glove

    tokenizer = train_tokenizer(
        UNIT_TEXTS * 3, vocab_size=400, max_tokens=64, min_frequency=1, pieces=150, vectors=load_glove()
    )
    torch.manual_seed(seed)
    config = TrainConfig(model=ModelConfig(embedding_dim=8, hidden_size=6, dropout=0.0))
    model = new_model(tokenizer, ("negative", "positive"), config).eval()
    examples = [Example(t, i % 2) for i, t in enumerate(UNIT_TEXTS)]
    labels = ["negative", "positive"]
    export_model(model, tokenizer, path, examples, {"name": name, "version": version, "labels": str(labels)})
    files = {n: FileEntry(file_sha256(path / n), (path / n).stat().st_size) for n in (MODEL_FILE, TOKENIZER_FILE)}
    card = ModelCard(
        name=name, version=version, labels=labels, max_tokens=64, files=files, architecture=model.config.to_dict()
    )
    write_card(path, card)
    return path


@dataclass
class Load:
    """What a steady load got: the answers' JSON bodies (in the order they came) and the text of every
    answer that was not a 200."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    begun: list[int] = field(default_factory=list)  # per client: the requests it has sent
    done: list[int] = field(default_factory=list)  # per client: the requests it has had answered

    def answered_from_now(self, timeout: float = 60) -> int:
        """Wait until every client has had an answer to a request it sent after this call; the index in
        ``answers`` from which on every answer is to such a request (each client waits for each answer)."""
        begun = list(self.begun)
        deadline = time.monotonic() + timeout
        while any(done <= sent for done, sent in zip(self.done, begun, strict=True)):
            assert time.monotonic() < deadline, "a client got no answer"
            time.sleep(0.05)
        return len(self.answers)


@contextmanager
def steady_load(base: str, body: dict[str, object], clients: int = 4, path: str = "/predict") -> Iterator[Load]:
    """``clients`` threads posting ``body`` to ``path`` back to back while the block runs."""
    load = Load(begun=[0] * clients, done=[0] * clients)
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                load.begun[n] += 1
                answer = http.post(path, json=body)
                if answer.status_code == 200:
                    load.answers.append(answer.json())
                else:
                    load.failures.append(answer.text)
                load.done[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        yield load
    finally:
        stop.set()
        for t in threads:
            t.join(30)


POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@contextmanager
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server (Debian's package) on a free loopback port, in a directory of its own: its
    URL. It refuses to run as root, so it runs as the postgres user when the tests are root."""
    if not POSTGRES_BIN:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql)")
    binaries, port = POSTGRES_BIN[-1], pick_free_port()
    folder = Path(tempfile.mkdtemp(prefix="sentiment-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data = folder / "pg"
    subprocess.run(
        [*as_user, binaries / "initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, binaries / "pg_ctl", "-D", data, "-o", options, "-w", "-l", folder / "log", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, binaries / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
