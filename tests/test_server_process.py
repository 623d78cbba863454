"""The real server process (`python -m service`) over HTTP on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def start_server(model_dir: Path, port: int, **env: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "SENTIMENT_MODEL_DIR": str(model_dir), "SENTIMENT_PORT": str(port),
                   "SENTIMENT_HOST": "127.0.0.1", "SENTIMENT_PROVIDER": "cpu", **env}
    return subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_ready(base: str, process: subprocess.Popen[str], timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not become ready")


@pytest.fixture
def server(tiny_model_dir: Path, free_port: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = start_server(tiny_model_dir, free_port, SENTIMENT_SHUTDOWN_GRACE_S="10")
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_serves_predictions_over_http(server: tuple[str, subprocess.Popen[str]]) -> None:
    base, _ = server
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post("/predict", json={"texts": ["Loved it, wonderful.", "Hated it, awful."]},
                               headers={"X-Request-ID": "proc-test-1"})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "proc-test-1"
        predictions = response.json()["predictions"]
        assert len(predictions) == 2 and all(p["label"] in {"positive", "negative"} for p in predictions)
        assert client.get("/model").json()["provider"] == "CPUExecutionProvider"
        assert "sentiment_requests_total" in client.get("/metrics").text


def test_sigterm_drains_in_flight_requests(server: tuple[str, subprocess.Popen[str]]) -> None:
    base, process = server
    results: list[int | str] = []
    lock = threading.Lock()
    long_text = " ".join(["a fine and thoughtful film"] * 40)

    def client_loop() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(200):
                try:
                    status: int | str = client.post("/predict", json={"texts": [long_text] * 16}).status_code
                except httpx.TransportError as exc:  # refused after shutdown began: never accepted
                    status = type(exc).__name__
                with lock:
                    results.append(status)
                if not isinstance(status, int):
                    return

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code = process.wait(timeout=15)
    exit_seconds = time.monotonic() - sent
    for t in threads:
        t.join(30)
    assert code == 0
    assert exit_seconds < 10
    answered = [r for r in results if isinstance(r, int)]
    assert answered and all(status == 200 for status in answered), results
    assert all(r in {"ConnectError", "RemoteProtocolError", "ReadError"} for r in results if not isinstance(r, int))
    logs = [json.loads(line) for line in (process.stderr.read() if process.stderr else "").splitlines() if line]
    assert any(entry["message"] == "drained; shutting down" for entry in logs)
    assert all("texts" not in entry for entry in logs)  # review texts are never logged at info level


def test_bad_model_directory_exits_with_one_line(tmp_path: Path, free_port: int) -> None:
    process = start_server(tmp_path / "missing", free_port)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot start: model directory {tmp_path / 'missing'} does not exist"]
