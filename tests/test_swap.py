"""Model swap without downtime: the admin route and SIGHUP, one process and several, good and bad
directories, under steady load."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
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
from tests.support import launch, metric, steady_load, stop_server, until, wait_until_ready

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
        with steady_load(base, {"texts": ["A fine film.", "Dull and long."] * 8}, clients=6) as load:
            time.sleep(1.0)
            swapped = httpx.post(f"{base}/admin/model", json={"model_dir": str(v2)}, headers=ADMIN, timeout=60)
            assert swapped.status_code == 200, swapped.text
            time.sleep(1.0)
        assert load.failures == []
        versions = [a["model"]["version"] for a in load.answers]
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
def test_with_two_processes_a_swap_under_load_answers_when_every_process_serves_it(
    tiny_model_dir: Path, v2: Path
) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_PROCESSES="2", SENTIMENT_ADMIN_KEY="admin-secret")
    try:
        bad = httpx.post(f"{base}/admin/model", json={"model_dir": "/nonexistent"}, headers=ADMIN, timeout=60)
        assert bad.status_code == 422 and "not a usable model directory" in bad.json()["error"]["message"]
        predict: dict[str, object] = {"texts": ["A fine film.", "Dull and long."] * 4}
        explain: dict[str, object] = {"text": "A fine film, " * 40}
        with (
            steady_load(base, predict, clients=16) as load,
            steady_load(base, explain, clients=2, path="/explain") as explaining,
        ):
            time.sleep(1.0)
            swapped = httpx.post(f"{base}/admin/model", json={"model_dir": str(v2)}, headers=ADMIN, timeout=600)
            assert swapped.status_code == 200, swapped.text
            assert swapped.json()["model"]["version"] == "0.0.2" and swapped.json()["processes"] == 2
            # The process that answered leaves right after its answer, answering what its kept-alive
            # connections still bring (on the old model) until it is gone.
            until(lambda: len(_workers(process)) == 2)
            count = load.answered_from_now()  # an answer of the leaving process may still be on its way
            time.sleep(1.0)
        assert load.failures == [] and explaining.failures == []  # a process being replaced answers what it accepted
        assert {a["model"]["version"] for a in load.answers[count:]} == {"0.0.2"}
        assert metric(base, 'sentiment_model_swaps_total{result="ok"}') == 1
        ready = httpx.get(f"{base}/readyz", timeout=5).json()
        assert ready == {"status": "ready", "processes": {"configured": 2, "serving": 2}}
        assert process.poll() is None
    finally:
        stop_server(process)


def _workers(supervisor: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    return [int(c) for c in children if "spawn_main" in _command_line(int(c))]


def _command_line(pid: int) -> str:
    """A process's command line; empty once it has gone (a child can exit between listing and reading)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.slow
def test_a_worker_killed_after_a_swap_is_replaced_from_the_proven_copy_not_the_damaged_directory(
    tiny_model_dir: Path, v2: Path, tmp_path: Path
) -> None:
    live = Path(shutil.copytree(v2, tmp_path / "live"))
    base, process = launch(tiny_model_dir, SENTIMENT_PROCESSES="2", SENTIMENT_ADMIN_KEY="admin-secret")
    try:
        swapped = httpx.post(f"{base}/admin/model", json={"model_dir": str(live)}, headers=ADMIN, timeout=600)
        assert swapped.status_code == 200, swapped.text
        (live / "model_card.json").write_text("{")  # the operator's directory breaks on disk
        (live / "model.onnx").write_bytes(b"broken")
        until(lambda: len(_workers(process)) == 2)  # the process that answered the swap has left
        with steady_load(base, {"text": "fine"}, clients=4) as load:
            os.kill(_workers(process)[0], signal.SIGKILL)
            until(lambda: metric(base, 'sentiment_process_replacements_total{outcome="ok"}') >= 1)
            until(lambda: httpx.get(f"{base}/readyz", timeout=5).json().get("processes", {}).get("serving") == 2)
            time.sleep(0.5)
        assert process.poll() is None
        assert {a["model"]["version"] for a in load.answers} == {"0.0.2"}
        assert all("gone" in f or "Connection" in f for f in load.failures)  # only the killed process's requests
    finally:
        stop_server(process)


@pytest.mark.slow
def test_a_replacement_that_cannot_start_does_not_stop_the_others(tiny_model_dir: Path, tmp_path: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_PROCESSES="2", TMPDIR=str(tmp_path))
    try:
        until(lambda: httpx.get(f"{base}/readyz", timeout=5).json()["processes"]["serving"] == 2)
        (control,) = tmp_path.glob("sentiment-control-*")
        (proven,) = (control / "models").iterdir()
        proven.chmod(0o755)
        (proven / "model.onnx").chmod(0o644)
        original = (proven / "model.onnx").read_bytes()
        (proven / "model.onnx").write_bytes(b"broken")  # the host loses the model: no replacement can start
        killed = _workers(process)[0]
        assert (control / f"gauge_livesum_{killed}.db").exists()
        os.kill(killed, signal.SIGKILL)
        until(lambda: metric(base, 'sentiment_process_replacements_total{outcome="failed"}') >= 2)
        assert process.poll() is None  # the supervisor keeps going, the other process keeps serving
        answers = [httpx.post(f"{base}/predict", json={"text": "fine"}, timeout=10) for _ in range(10)]
        assert {a.status_code for a in answers} == {200}
        assert httpx.get(f"{base}/readyz", timeout=5).json()["processes"] == {"configured": 2, "serving": 1}
        assert httpx.get(f"{base}/model", timeout=5).json()["processes"] == {"configured": 2, "serving": 1}
        (proven / "model.onnx").write_bytes(original)  # repaired: the next retry (back-off) brings it back
        until(lambda: httpx.get(f"{base}/readyz", timeout=5).json()["processes"]["serving"] == 2, 120)
        assert not (control / f"gauge_livesum_{killed}.db").exists()  # a dead process's gauges are not summed
    finally:
        stop_server(process)
