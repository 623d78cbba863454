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

from tests.support import ROOT, launch, start_server, stop_server, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tiny_model_dir: Path, free_port: int, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log = tmp_path / "server.log"
    process = start_server(tiny_model_dir, free_port, log, SENTIMENT_SHUTDOWN_GRACE_S="10")
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(base, process)
        yield base, process, log
    finally:
        stop_server(process)


def test_serves_predictions_over_http(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, _, _ = server
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post(
            "/predict",
            json={"texts": ["Loved it, wonderful.", "Hated it, awful."]},
            headers={"X-Request-ID": "proc-test-1"},
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "proc-test-1"
        predictions = response.json()["predictions"]
        assert len(predictions) == 2 and all(p["label"] in {"negative", "neutral", "positive"} for p in predictions)
        assert client.get("/model").json()["provider"] == "CPUExecutionProvider"
        assert "sentiment_requests_total" in client.get("/metrics").text


def test_sigterm_drains_in_flight_requests(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, process, log = server
    results: list[int | str] = []
    lock = threading.Lock()
    long_text = " ".join(["a fine and thoughtful film"] * 40)

    def client_loop() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(200):
                try:
                    answer = client.post("/predict", json={"texts": [long_text] * 16})
                    status: int | str = answer.status_code
                    if status == 503:  # a kept-alive request after the drain began: refused, and says so
                        said = (answer.json()["error"]["message"], answer.headers.get("connection"))
                        status = 503 if said == ("the service is shutting down", "close") else f"503 {said}"
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
    # Every request the server accepted before the drain is answered 200; one that arrives on a kept-alive
    # connection afterwards is refused with 503 "shutting down" and Connection: close (never a reset, never
    # a 500); after that the client's next connection is refused.
    answered = [r for r in results if isinstance(r, int)]
    assert answered.count(200) > 8 and set(answered) <= {200, 503}, results
    refused = [r for r in results if not isinstance(r, int)]
    assert set(refused) <= {"ConnectError", "RemoteProtocolError", "ReadError"}, refused
    logs = [json.loads(line) for line in log.read_text().splitlines() if line]
    messages = [entry["message"] for entry in logs]
    assert "drained; shutting down" in messages
    assert messages[-1].startswith("Finished server process")
    assert all("texts" not in entry for entry in logs)  # review texts are never logged at info level


def test_bad_model_directory_exits_with_one_line(tmp_path: Path, free_port: int) -> None:
    log = tmp_path / "server.log"
    process = start_server(tmp_path / "missing", free_port, log)
    assert process.wait(30) == 2
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    missing = tmp_path / "missing"
    assert errors == [f"error: cannot start: {missing}: the model directory does not exist or is not a directory"]


def test_several_processes_share_the_port_and_stop_together(tiny_model_dir: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_PROCESSES="2", SENTIMENT_SHUTDOWN_GRACE_S="5")
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        servers = [
            c
            for c in children
            if "service" in Path(f"/proc/{c}/cmdline").read_text()
            or "multiprocessing" in Path(f"/proc/{c}/cmdline").read_text()
        ]
        assert len(servers) >= 2, children
        with httpx.Client(base_url=base, timeout=10) as client:
            responses = [client.post("/predict", json={"text": f"Loved it {i}."}) for i in range(20)]
            assert {r.status_code for r in responses} == {200}
            assert all(r.json()["predictions"][0]["label"] in ("negative", "neutral", "positive") for r in responses)
        # Whichever process answers a scrape (a new connection each time), it reports the requests of all.
        counted = 'sentiment_requests_total{method="POST",route="/predict",status="200"} 20.0'
        deadline = time.monotonic() + 5  # a request is counted just after its answer is sent
        while counted not in httpx.get(f"{base}/metrics", timeout=5).text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert all(counted in httpx.get(f"{base}/metrics", timeout=5).text for _ in range(8))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in children):
        assert time.monotonic() < deadline, [Path(f"/proc/{c}/cmdline").read_text() for c in children]
        time.sleep(0.1)


def test_several_processes_refuse_a_bad_model_with_one_line(model_copy: Path, free_port: int) -> None:
    (model_copy / "model.onnx").write_bytes(b"not a model")
    env = {
        **os.environ,
        "SENTIMENT_MODEL_DIR": str(model_copy),
        "SENTIMENT_PORT": str(free_port),
        "SENTIMENT_PROCESSES": "2",
    }
    process = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 2
    assert "sha256" in process.stderr and process.stderr.count("\n") <= 2
