"""Behaviour under load against the real server process on loopback: overload, soak, disconnects and slow
clients. Bounded in count and time; nothing here asserts speed."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import gauge, launch, metric, rss_mb, stop_server

pytestmark = pytest.mark.slow

REVIEW = "The plot was thin but the performances were warm and the ending surprisingly moving. " * 6


@pytest.fixture
def small_queue_server(tiny_model_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    base, process = launch(tiny_model_dir, SENTIMENT_MAX_QUEUE="64", SENTIMENT_MAX_BATCH_SIZE="16")
    yield base, process
    stop_server(process)


def test_overload_gives_only_200_and_429_and_recovers(small_queue_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, process = small_queue_server
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    depths: list[float] = []

    async def one(client: httpx.AsyncClient) -> None:
        response = await client.post("/predict", json={"texts": [REVIEW] * 8})
        statuses[response.status_code] += 1
        if response.status_code == 429:
            retry_after.add(response.headers.get("retry-after", ""))

    async def watch_depth() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(40):
                text = (await client.get("/metrics")).text
                depths.append(gauge(text, r"^sentiment_queue_depth (\S+)$"))
                await asyncio.sleep(0.05)

    async def main() -> None:
        # One connection per request: reusing a keep-alive connection that the server is closing at the same
        # moment is a client-side HTTP/1.1 race, not an answer from the service.
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            await asyncio.gather(watch_depth(), *(one(client) for _ in range(400)))

    asyncio.run(main())
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[429] > 0 and statuses[200] > 0, statuses
    assert retry_after == {"1"}
    assert max(depths) <= 64
    started = time.monotonic()
    response = httpx.post(f"{base}/predict", json={"text": REVIEW}, timeout=10)
    assert response.status_code == 200
    print(f"first request after overload answered in {1000 * (time.monotonic() - started):.1f} ms; {statuses}")
    assert metric(base, "sentiment_queue_depth") == 0
    assert process.poll() is None


def test_soak_has_no_errors_and_no_memory_growth(tiny_model_dir: Path) -> None:
    base, process = launch(tiny_model_dir)
    statuses: Counter[int] = Counter()
    samples: list[tuple[float, float]] = []

    async def worker(client: httpx.AsyncClient, stop: float) -> None:
        i = 0
        while time.monotonic() < stop:
            response = await client.post("/predict", json={"texts": [f"{REVIEW} {i}", "short one"]})
            statuses[response.status_code] += 1
            i += 1

    async def sampler(stop: float) -> None:
        start = time.monotonic()
        while time.monotonic() < stop:
            samples.append((time.monotonic() - start, rss_mb(process.pid)))
            await asyncio.sleep(1)

    async def main() -> None:
        stop = time.monotonic() + 65
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await asyncio.gather(sampler(stop), *(worker(client, stop) for _ in range(16)))

    try:
        asyncio.run(main())
    finally:
        stop_server(process)
    assert set(statuses) == {200}, statuses
    warm = next(rss for t, rss in samples if t >= 10)
    final = samples[-1][1]
    print(f"soak: {sum(statuses.values())} requests; RSS {warm:.0f} MB after warm-up, {final:.0f} MB at the end")
    assert final < warm * 1.10


def test_disconnecting_and_slow_clients_leak_nothing(tiny_model_dir: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_MAX_WAIT_MS="200", SENTIMENT_MAX_BATCH_SIZE="512")
    host, port = base.removeprefix("http://").split(":")
    try:
        # Clients that give up: the timeout fires while their texts wait for the held-open batch.
        async def impatient() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=0.05) as client:
                await asyncio.gather(
                    *(client.post("/predict", json={"texts": [REVIEW] * 4}) for _ in range(30)), return_exceptions=True
                )

        asyncio.run(impatient())
        time.sleep(1.0)
        assert metric(base, "sentiment_queue_depth") == 0
        gone = metric(base, 'sentiment_rejected_requests_total{reason="client_gone"}')
        assert gone > 0
        scored = metric(base, "sentiment_texts_scored_total")
        assert scored < 30 * 4  # withdrawn texts never reached the model

        # Slow clients: headers and half a body, then silence. They hold a socket, not a queue slot.
        slow = []
        body = b'{"texts": ["' + b"a" * 100
        for _ in range(50):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n" + body
            )
            slow.append(sock)
        rss_before = rss_mb(process.pid)
        for _ in range(20):
            assert httpx.post(f"{base}/predict", json={"text": REVIEW}, timeout=10).status_code == 200
        assert metric(base, "sentiment_queue_depth") == 0
        for sock in slow:
            sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert rss_mb(process.pid) < rss_before + 20
    finally:
        stop_server(process)
