"""The side-by-side bench's own parts: its bodies never repeat a text, wrk's threads never send a body
twice, and a stack started by the harness (the plain FastAPI one, whose packages this environment has)
answers exactly what this service answers for the same model."""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from bench.compare import STACKS, Stack, launch, load_point, selected, stop_group, write_bodies
from model_runtime import Predictor
from tests.support import artifact_dir

TEXTS = [f"review number {i}: {'good' if i % 2 else 'bad'} film" for i in range(700)]


def test_bodies_hold_each_text_once(tmp_path: Path) -> None:
    files = write_bodies(TEXTS, tmp_path)
    for workload, n in (("1 text", 1), ("32 texts", 32)):
        bodies = [json.loads(line) for line in files[workload].read_text().splitlines()]
        texts = [t for body in bodies for t in body["texts"]]
        assert {len(body["texts"]) for body in bodies} == {n}
        assert len(texts) == len(set(texts)) == len(TEXTS) // n * n


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.seen.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_threads_send_disjoint_bodies(tmp_path: Path) -> None:
    files = write_bodies([f"text {i}" for i in range(200_000)], tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = load_point(server.server_address[1], "/predict", files["1 text"], 8, 1)
    finally:
        server.shutdown()
        server.server_close()
    assert result["statuses"] == {"200": result["requests"]} and result["requests"] > 50
    # every body the server got was a different one (wrk does not count the requests cut off at the end)
    assert len(set(_Recorder.seen)) == len(_Recorder.seen) >= result["requests"]


def test_a_stack_started_by_the_harness_answers_like_the_service(tiny_model_dir: Path, free_port: int) -> None:
    plain = next(s for s in STACKS if s.name == "FastAPI + onnxruntime")
    here = Stack(plain.name, [], plain.command, plain.path, plain.batching)  # this environment has its packages
    port = free_port
    process = launch(here, {}, port, tiny_model_dir, "cpu", artifact_dir("bench") / "stack.log")
    try:
        texts = ["It was fine.", "A triumph, moving and funny.", TEXTS[3] * 40]
        answer = httpx.post(f"http://127.0.0.1:{port}{here.path}", json={"texts": texts}, timeout=30).json()
    finally:
        stop_group(here, process)
    assert process.poll() is not None
    expected = Predictor.load(tiny_model_dir).predict(texts, max_batch_tokens=4096)
    assert [p["probabilities"] for p in answer["predictions"]] == [e.probabilities for e in expected]


def test_this_service_under_another_server_command(tiny_model_dir: Path, free_port: int) -> None:
    """--server-command starts this service another way (here uvicorn's own CLI on the app factory)."""
    command = "bin/uvicorn --factory --port {port} service.__main__:app_from_environment"
    args = argparse.Namespace(stacks="this service", env=["SENTIMENT_WARMUP_RUNS=0"], server_command=command)
    (stack,) = selected(args)
    assert stack.command == command.split() and stack.env == {"SENTIMENT_WARMUP_RUNS": "0"}
    process = launch(stack, {}, free_port, tiny_model_dir, "cpu", artifact_dir("bench") / "server-command.log")
    try:
        answer = httpx.post(f"http://127.0.0.1:{free_port}/predict", json={"texts": ["It was fine."]}, timeout=30)
        served = httpx.get(f"http://127.0.0.1:{free_port}/model", timeout=30).json()
    finally:
        stop_group(stack, process)
    predictor = Predictor.load(tiny_model_dir)
    assert answer.json()["predictions"][0]["probabilities"] == predictor.predict(["It was fine."])[0].probabilities
    assert served["version"] == predictor.card.version
