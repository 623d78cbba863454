"""Model swap without downtime: the admin route and SIGHUP, one process and several, good and bad
directories, under steady load."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from model_runtime import read_card, write_card
from service.app import create_app
from service.config import Settings
from tests.support import launch, metric, steady_load, stop_server, wait_until_ready

ADMIN = {"Authorization": "Bearer admin-secret"}


def renamed(source: Path, target: Path, version: str) -> Path:
    """A copy of a model directory under another version (the card is not covered by its own hashes)."""
    shutil.copytree(source, target)
    card = read_card(target)
    card.version = version
    write_card(target, card)
    return target


@pytest.fixture
def v2(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return renamed(tiny_model_dir, tmp_path / "v2", "0.0.2")


@pytest.fixture
def admin_client(tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_model_dir, admin_key="admin-secret")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_until_ready(client)
        yield client


def test_admin_route_swaps_to_a_new_directory(admin_client: TestClient, v2: Path) -> None:
    assert admin_client.post("/predict", json={"text": "fine"}).json()["model"]["version"] == "0.0.1"
    answer = admin_client.post("/admin/model", json={"model_dir": str(v2)}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == {"name": "tiny-bilstm", "version": "0.0.2"}
    assert admin_client.get("/model").json()["version"] == "0.0.2"
    assert admin_client.post("/predict", json={"text": "fine"}).json()["model"]["version"] == "0.0.2"
    assert admin_client.post("/explain", json={"text": "fine"}).json()["model"]["version"] == "0.0.2"
    again = admin_client.post("/admin/model", headers=ADMIN)  # no body: the directory in service, read again
    assert again.status_code == 200 and again.json()["model_dir"] == str(v2)
    assert 'sentiment_model_swaps_total{result="ok"} 2.0' in admin_client.get("/metrics").text


def test_a_bad_directory_is_refused_and_the_old_model_keeps_serving(
    admin_client: TestClient, v2: Path, tmp_path: Path
) -> None:
    (v2 / "model.onnx").write_bytes(b"not a model")
    for bad in (v2, tmp_path / "missing"):
        answer = admin_client.post("/admin/model", json={"model_dir": str(bad)}, headers=ADMIN)
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "bad_model"
        assert "old one still serves" in answer.json()["error"]["message"]
    assert admin_client.get("/model").json()["version"] == "0.0.1"
    assert admin_client.post("/predict", json={"text": "fine"}).status_code == 200
    assert 'sentiment_model_swaps_total{result="failed"} 2.0' in admin_client.get("/metrics").text


def test_the_admin_route_needs_its_key_and_exists_only_with_one(admin_client: TestClient, v2: Path) -> None:
    body = {"model_dir": str(v2)}
    assert admin_client.post("/admin/model", json=body).status_code == 401
    assert admin_client.post("/admin/model", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert admin_client.post("/admin/model", json={"model_dir": 3}, headers=ADMIN).status_code == 422
    assert "/admin/model" in admin_client.get("/openapi.json").json()["paths"]
    with TestClient(create_app(Settings(model_dir=v2))) as plain:
        assert plain.post("/admin/model", json=body, headers=ADMIN).status_code == 404
        assert "/admin/model" not in plain.get("/openapi.json").json()["paths"]


@pytest.mark.slow
def test_no_request_fails_across_a_swap_under_steady_load(tiny_model_dir: Path, v2: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_ADMIN_KEY="admin-secret")
    try:
        with steady_load(base, {"texts": ["A fine film.", "Dull and long."] * 8}, clients=6) as (answers, failures):
            time.sleep(1.0)
            swapped = httpx.post(f"{base}/admin/model", json={"model_dir": str(v2)}, headers=ADMIN, timeout=60)
            assert swapped.status_code == 200, swapped.text
            time.sleep(1.0)
        assert failures == []
        versions = [a["model"]["version"] for a in answers]
        seen = Counter(versions)
        assert seen["0.0.1"] > 0 and seen["0.0.2"] > 0
        assert versions[-1] == "0.0.2"
        assert metric(base, 'sentiment_model_swaps_total{result="ok"}') == 1
    finally:
        stop_server(process)


@pytest.mark.slow
def test_sighup_reads_the_model_directory_again(tiny_model_dir: Path, tmp_path: Path) -> None:
    live = renamed(tiny_model_dir, tmp_path / "live", "0.0.1")
    base, process = launch(live)
    try:
        card = read_card(live)
        card.version = "0.0.9"  # the directory is updated in place, then the server is told
        write_card(live, card)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/model", timeout=5).json()["version"] != "0.0.9":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (live / "model.onnx").write_bytes(b"broken")  # a bad directory: SIGHUP changes nothing
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while metric(base, 'sentiment_model_swaps_total{result="failed"}') < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(f"{base}/predict", json={"text": "fine"}, timeout=10).json()["model"]["version"] == "0.0.9"
        assert process.poll() is None
    finally:
        stop_server(process)


@pytest.mark.slow
def test_every_process_swaps(tiny_model_dir: Path, v2: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_PROCESSES="2", SENTIMENT_ADMIN_KEY="admin-secret")
    try:
        bad = httpx.post(f"{base}/admin/model", json={"model_dir": "/nonexistent"}, headers=ADMIN, timeout=60)
        assert bad.status_code == 422
        answer = httpx.post(f"{base}/admin/model", json={"model_dir": str(v2)}, headers=ADMIN, timeout=60)
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while True:  # new connections each time: the kernel spreads them over the processes
            answers = [httpx.post(f"{base}/predict", json={"text": "ok"}, timeout=10) for _ in range(12)]
            failed = [(a.status_code, a.text) for a in answers if a.status_code != 200]
            assert not failed, failed  # a process being replaced answers what it accepted
            seen = {a.json()["model"]["version"] for a in answers}
            if seen == {"0.0.2"}:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
        assert process.poll() is None
        assert json.loads(httpx.get(f"{base}/model", timeout=5).text)["version"] == "0.0.2"
    finally:
        stop_server(process)
