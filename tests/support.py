"""Helpers the tests share (one module; no test module imports another): paths, the tiny model's training
settings, real server processes, readiness waits and metric reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from bench.run import free_port as pick_free_port
from bench.run import rss_mb
from model_runtime.contract import SHIPPED_MODEL_DIR
from training.train import TrainConfig

__all__ = [
    "ARTIFACTS",
    "ROOT",
    "SHIPPED_MODEL",
    "TINY_CONFIG",
    "artifact_dir",
    "gauge",
    "launch",
    "metric",
    "pick_free_port",
    "rss_mb",
    "start_server",
    "stop_server",
    "wait_ready",
    "wait_until_ready",
]

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = SHIPPED_MODEL_DIR
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))

# About 5 s of training on 2,000 reviews; reaches ~0.8 validation accuracy.
TINY_CONFIG = TrainConfig(
    epochs=4,
    batch_size=32,
    max_samples=2000,
    vocab_size=4000,
    max_tokens=160,
    seed=7,
    learning_rate=8e-3,
    model={"embedding_dim": 32, "hidden_size": 24, "num_layers": 1, "dropout": 0.2},
    pretrain_epochs=1,  # the shipped recipe pretrains 3; one exercises it here in seconds
)


def artifact_dir(name: str) -> Path:
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_server(model_dir: Path, port: int, log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """``python -m service`` on loopback; its log (JSON lines on stderr) goes to ``log`` (a file, so a
    busy server never blocks on a full pipe)."""
    environment = {
        **os.environ,
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


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def gauge(metrics_text: str, pattern: str) -> float:
    """The value a ``^name (\\S+)$`` pattern finds in a /metrics text (the metric must be there)."""
    match = re.search(pattern, metrics_text, re.M)
    assert match is not None, pattern
    return float(match.group(1))
