"""Hostile and broken clients against a real server process over real sockets: nothing a client does may
lock others out, reach a 500, reset a connection it should have answered, or count as the server's fault."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import launch, metric, rss_mb, stop_server, wait_ready

pytestmark = pytest.mark.slow
MODEL = "tiny-bilstm"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """One server with short deadlines and few in-flight slots (so that slow clients would take them all)."""
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    base, process = launch(
        tiny_model_dir,
        log,
        SENTIMENT_HEADER_TIMEOUT_S="2",
        SENTIMENT_BODY_TIMEOUT_S="2",
        SENTIMENT_MAX_CONCURRENT_REQUESTS="8",
        SENTIMENT_MAX_HEADER_BYTES="16384",
    )
    try:
        yield base, process.pid, log
    finally:
        stop_server(process)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def connect(base: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(base)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from the socket: status, headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def predict_ok(base: str) -> None:
    response = httpx.post(f"{base}/predict", json={"text": "A fine film."}, timeout=10)
    assert response.status_code == 200, response.text


def test_slow_headers_and_bodies_lock_nobody_out_and_get_408(server: tuple[str, int, Path]) -> None:
    """A thousand connections dribble their headers or stop half-way through a body: a normal request is
    served meanwhile (the in-flight slots are only taken once a body has arrived), and each slow one gets
    408 and a closed connection once its deadline passes."""
    base = server[0]
    slow_bodies, slow_headers = [], []
    for i in range(1000):
        sock = connect(base)
        if i % 2:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"text": "'
            )
            slow_bodies.append(sock)
        else:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow_headers.append(sock)
    predict_ok(base)
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["Fine."]}]}
    assert httpx.post(f"{base}/v2/models/{MODEL}/infer", json=v2, timeout=10).status_code == 200
    for sock in slow_bodies[:50] + slow_headers[:50]:
        status, headers, _ = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed by the server
    for sock in slow_bodies + slow_headers:
        sock.close()
    predict_ok(base)


def test_a_header_bomb_is_431_and_buffers_nothing(server: tuple[str, int, Path]) -> None:
    base, pid, _ = server
    before = rss_mb(pid)
    for _ in range(4):
        sock = connect(base)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(32):  # 32 MB offered; the server answers and closes after its first 16 KB
                sock.sendall(b"a" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = read_response(sock)
        assert status == 431 and headers["connection"] == "close" and b"16384 bytes" in body
        sock.close()
    many = connect(base)
    many.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n")
    assert read_response(many)[0] == 431
    many.close()
    assert rss_mb(pid) - before < 30
    predict_ok(base)


def test_a_client_that_leaves_mid_body_is_a_499_not_a_500(server: tuple[str, int, Path]) -> None:
    base, _, log = server
    for path in ("/predict", "/explain", f"/v2/models/{MODEL}/infer"):
        for _ in range(10):
            sock = connect(base)
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
                + b'Content-Length: 5000\r\n\r\n{"text": "abc'
            )
            sock.close()
    deadline = time.monotonic() + 10
    while metric(base, 'sentiment_rejected_requests_total{reason="client_gone"}') < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = httpx.get(f"{base}/metrics").text
    # No 5xx on any route but readiness, whose 503 while the model warms up is its answer (the fixture's
    # wait for readiness may see it, depending on when the port opens).
    assert not re.search(r'sentiment_requests_total\{(?![^}]*route="/readyz")[^}]*status="5\d\d"', text)
    assert re.search(r'sentiment_requests_total\{method="POST",route="/predict",status="499"\} (\d+)', text)
    assert metric(base, 'sentiment_rejected_requests_total{reason="client_gone"}') >= 30
    assert "Traceback" not in log.read_text() and '"level": "error"' not in log.read_text()


MALFORMED = [
    {"parameters": [1], "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"], "parameters": "x"}]},
    {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
        "outputs": [{"name": "label", "parameters": [1]}],
    },
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [True], "data": ["x"]}]},
    {"inputs": "text"},
]


def binary_request(tail: bytes, declared: int | bool, shape: int = 1) -> tuple[bytes, dict[str, str]]:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [shape], "parameters": {"binary_data_size": declared}}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + tail, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def test_every_malformed_inference_request_is_a_400_on_a_connection_that_stays_usable(
    server: tuple[str, int, Path],
) -> None:
    base = server[0]
    bodies = [(json.dumps(b).encode(), {"Content-Type": "application/json"}) for b in MALFORMED]
    element = struct.pack("<I", 4) + b"good"
    bodies += [
        binary_request(b"\x01\x00", 2),  # shorter than a length prefix
        binary_request(element + b"\x03\x00", len(element) + 2),  # a trailing partial prefix
        binary_request(struct.pack("<I", 1_000_000) + b"abc", 7),  # a prefix that overruns the buffer
        binary_request(b"\xff\xff\xff\xff", 4),
        binary_request(element, 3),  # binary_data_size smaller than the element
        binary_request(element, True),
    ]
    connection = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=10)
    for body, headers in bodies:
        connection.request("POST", f"/v2/models/{MODEL}/infer", body=body, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 400, (body[:120], answer)
        assert set(answer) == {"error"} and response.getheader("connection") != "close"
        connection.request("GET", "/healthz")  # the same connection, reused
        second = connection.getresponse()
        assert second.status == 200 and second.read()
    connection.close()


def test_a_huge_binary_body_is_refused_by_its_count_and_predictions_stay_served(server: tuple[str, int, Path]) -> None:
    base = server[0]
    zeros = b"\x00\x00\x00\x00" * 2_000_000  # 8 MB: two million empty strings
    body, headers = binary_request(zeros, len(zeros), shape=2_000_000)
    results: list[int] = []

    def send() -> None:
        results.append(
            httpx.post(f"{base}/v2/models/{MODEL}/infer", content=body, headers=headers, timeout=30).status_code
        )

    senders = [threading.Thread(target=send) for _ in range(2)]
    for t in senders:
        t.start()
    for _ in range(20):
        predict_ok(base)
    for t in senders:
        t.join(30)
    assert results == [400, 400]
    answer = httpx.post(f"{base}/v2/models/{MODEL}/infer", content=body, headers=headers, timeout=30).json()
    assert answer == {"error": "text: must hold 1 to 64 texts, not 2000000"}


def test_headers_and_encodings_clients_send(server: tuple[str, int, Path]) -> None:
    base = server[0]
    sock = connect(base)
    sock.sendall("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: déjà-vu-42\r\n\r\n".encode())
    status, _, _ = read_response(sock)
    sock.close()
    sock = connect(base)
    sock.sendall("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: déjà-vu-42\r\n\r\n".encode())
    raw = sock.recv(65536)
    sock.close()
    assert status == 200 and "x-request-id: déjà-vu-42".encode() in raw  # the bytes as sent, not re-encoded
    packed = gzip.compress(json.dumps({"text": "A lovely film."}).encode())
    gzipped = httpx.post(
        f"{base}/predict", content=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert gzipped.status_code == 200
    bomb = gzip.compress(b'{"text": "' + b"a" * 20_000_000 + b'"}')
    assert httpx.post(f"{base}/predict", content=bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
    brotli = httpx.post(f"{base}/predict", content=b"{}", headers={"Content-Encoding": "br"})
    assert brotli.status_code == 415 and "Content-Encoding" in brotli.json()["error"]["message"]
    members = gzip.compress(b'{"text": ') + gzip.compress(b'"A lovely film."}')  # RFC 1952: members in a row
    gzip_headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert httpx.post(f"{base}/predict", content=members, headers=gzip_headers).status_code == 200
    for broken, fragment in ((packed[:-4], "trailer"), (packed + b"junk", "after its last gzip member")):
        answer = httpx.post(f"{base}/predict", content=broken, headers=gzip_headers)
        assert answer.status_code == 400 and fragment in answer.json()["error"]["message"]


def test_the_edges_of_the_protocol(server: tuple[str, int, Path]) -> None:
    base = server[0]
    for path in ("/healthz", "/readyz", "/model", "/metrics", "/", "/openapi.json", "/v2", "/v2/models/tiny-bilstm"):
        head, get = httpx.head(f"{base}{path}", timeout=10), httpx.get(f"{base}{path}", timeout=10)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], path
    duplicate = httpx.post(
        f"{base}/predict",
        content=b'{"text": "awful", "text": "wonderful"}',
        headers={"content-type": "application/json"},
    )
    assert duplicate.status_code == 422 and duplicate.json()["error"]["details"][0]["field"] == "text"
    for unreadable in ("<br>", "\u0085", " <BR/> "):
        for_us = httpx.post(f"{base}/predict", json={"text": unreadable}, timeout=10)
        assert for_us.status_code == 422 and "non-whitespace" in for_us.json()["error"]["message"]
        infer = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [unreadable]}]}
        assert httpx.post(f"{base}/v2/models/{MODEL}/infer", json=infer, timeout=10).status_code == 400
    sock = connect(base)  # Expect: 100-continue with a body over the limit: refused, and the connection closed
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: 99999999\r\n\r\n"
    )
    status, headers, _ = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    sock.close()
    sock = connect(base)
    body = b'{"text": "fine"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked)
    status, headers, _ = read_response(sock)
    assert status == 501 and headers["connection"] == "close"
    sock.close()
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'route="/v2/models/{name}",status="200"' in metrics
    assert 'route="/openapi.json",status="200"' in metrics
    assert 'route="/predict",status="413"' in metrics and 'method="HEAD",route="/healthz"' in metrics


def test_a_single_process_exits_0_on_sigterm(tiny_model_dir: Path) -> None:
    base, process = launch(tiny_model_dir)
    predict_ok(base)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_with_two_processes_sigterm_refuses_new_connections_and_answers_keep_alive_ones(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """While a long /explain drains after SIGTERM: a new connection is refused at once (or answered 503),
    never left hanging; a request on an idle keep-alive connection gets an answer with Connection: close,
    never a reset; the accepted /explain finishes."""
    base, process = launch(
        tiny_model_dir, tmp_path / "log", SENTIMENT_PROCESSES="2", SENTIMENT_MAX_EXPLAIN_TOKENS="4096"
    )
    try:
        wait_ready(base, process, timeout=60)
        idle = [http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=20) for _ in range(8)]
        for connection in idle:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
        long_text = " ".join(["a surprisingly moving and well acted film"] * 500)
        explained: list[int] = []
        slow = threading.Thread(
            target=lambda: explained.append(
                httpx.post(f"{base}/explain", json={"text": long_text}, timeout=60).status_code
            )
        )
        slow.start()
        time.sleep(0.3)  # the /explain is accepted and running
        os.kill(process.pid, signal.SIGTERM)
        time.sleep(0.6)
        kept_alive = []
        for connection in idle:
            try:
                connection.request(
                    "POST", "/predict", body=b'{"text": "x"}', headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                kept_alive.append((response.status, response.getheader("connection")))
                response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                kept_alive.append((0, type(exc).__name__))
        assert kept_alive and all(c == "close" for s, c in kept_alive if s), kept_alive
        assert not any(reason == "ConnectionResetError" for _, reason in kept_alive), kept_alive
        started = time.monotonic()
        try:
            refused = httpx.get(f"{base}/readyz", timeout=5).status_code
        except httpx.ConnectError:
            refused = 0
        assert refused in (0, 503) and time.monotonic() - started < 5
        slow.join(60)
        assert explained == [200]
        assert process.wait(60) == 0
    finally:
        stop_server(process)


# Texts a hostile client sends to make a pattern backtrack: runs of what the patterns name, openers with no
# closer, every one at the largest size the server takes (SENTIMENT_MAX_TEXT_CHARS, 100,000 by default).
HOSTILE_TEXTS = {
    "emoji run": "☀" * 100_000,
    "flags run": "🇫🇷" * 50_000,
    "<br opener then spaces": "<br" + " " * 99_990 + "x",
    "<br openers": ("<br" + " " * 50) * 1_886,
    "< run": "<" * 100_000,
    "emoticon mouth": ":" + ")" * 99_999,
    "full stop, brackets": "." + ")" * 99_999,
    "apostrophes": "a'" * 50_000,
    "one long word": "a" * 100_000,
    "sentences": "a. " * 33_333,
    "hashtags": "#a" * 50_000,
    "spaces": "x" + " " * 99_998 + "x",
}


def test_maximal_hostile_texts_are_answered_while_healthz_keeps_answering(server: tuple[str, int, Path]) -> None:
    """Every hostile text at the size limit, on every route that reads text, is answered (200, or 422 for
    what is not a text), while a health check keeps getting its answer: no step on a client's text re-scans
    it from every position (a quadratic pattern held the GIL for seconds to minutes)."""
    base = server[0]
    answers: list[tuple[str, str, int]] = []
    health: list[int] = []
    done = threading.Event()

    def hostile() -> None:
        with httpx.Client(timeout=120) as client:
            for name, text in HOSTILE_TEXTS.items():
                for path, body in (
                    ("/predict", {"text": text}),
                    ("/analyze", {"text": text}),
                    ("/explain", {"text": text}),
                    (
                        f"/v2/models/{MODEL}/infer",
                        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]},
                    ),
                ):
                    answers.append((name, path, client.post(f"{base}{path}", json=body).status_code))
        done.set()

    worker = threading.Thread(target=hostile)
    worker.start()
    with httpx.Client(timeout=5) as client:  # a frozen event loop would leave this unanswered
        while not done.is_set():
            health.append(client.get(f"{base}/healthz").status_code)
            time.sleep(0.05)
    worker.join()
    assert health and set(health) == {200}
    assert len(answers) == 4 * len(HOSTILE_TEXTS)
    assert all(status in (200, 400, 422) for _, _, status in answers), [
        a for a in answers if a[2] not in (200, 400, 422)
    ]
    scored = {(name, path) for name, path, status in answers if status == 200}
    assert ("emoji run", "/analyze") in scored and ("<br opener then spaces", "/predict") in scored
