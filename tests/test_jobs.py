"""Jobs (/jobs) against real server processes and a real database: SQLite by default, a real PostgreSQL
server started here; the Python client and the command line against them; kill -9 in the middle of a job
and a resume that keeps every row exactly once."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentiment_client import InvalidInputError, NotFoundError, SentimentClient
from service.jobs.store import JobStore
from tests.support import ROOT, launch, metric, postgres_server, stop_server, until

pytestmark = pytest.mark.slow
REVIEWS = [
    "A wonderful, moving film.",
    "Dull, slow and far too long.",
    "The staff were friendly. The room was dirty!",
    "It was fine.",
]


def review_file(folder: Path, rows: int, bad: bool = True) -> Path:
    """A CSV of ``rows`` reviews with an id column; with ``bad``, an empty text at row 3 and a line that is
    not UTF-8 at row 5."""
    lines = [b"id,text\n"]
    for i in range(rows):
        text = REVIEWS[i % len(REVIEWS)].encode()
        if bad and i == 3:
            text = b'"   "'
        elif bad and i == 5:
            text = b"Caf\xe9 was closed"
        elif b"," in text or b"!" in text:
            text = b'"' + text + b'"'
        lines.append(b"r%d," % i + text + b"\n")
    path = folder / "reviews.csv"
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("jobs")
    base, process = launch(
        tiny_model_dir,
        folder / "server.log",
        SENTIMENT_JOBS_DIR=str(folder / "data"),
        SENTIMENT_API_KEYS="key-a,key-b",
        SENTIMENT_JOBS_MAX_ROWS="5000",
        SENTIMENT_JOBS_MAX_UPLOAD_BYTES="400000",
    )
    yield base
    stop_server(process)


def test_a_file_becomes_a_job_whose_results_hold_every_row_once_in_order(server: str, tmp_path: Path) -> None:
    source = review_file(tmp_path, 300)
    with SentimentClient(server, api_key="key-a") as client:
        job = client.submit_job(source, id_column="id")
        assert job.state in ("queued", "running", "succeeded") and job.info["rows"]["total"] == 300
        job.wait(progress=False, timeout_s=120)
        rows = list(job.results())
        summary = job.summary()
        out = job.download(tmp_path / "scored.csv")
    assert [r["row"] for r in rows] == list(range(300)) and [r["id"] for r in rows] == [f"r{i}" for i in range(300)]
    assert rows[3]["error"] == "the text is empty" and "label" not in rows[3]
    assert rows[5]["error"] == "not UTF-8: byte 0xe9 at line 7, column 7"
    good = [r for r in rows if "error" not in r]
    assert len(good) == 298 and all(r["label"] in ("negative", "neutral", "positive") for r in good)
    assert job.info["rows"] == {"total": 300, "done": 298, "failed": 2}
    # the same text, the same answer as /predict
    predicted = httpx.post(f"{server}/predict", json={"text": REVIEWS[0]}, headers={"Authorization": "Bearer key-a"})
    assert rows[0]["probabilities"] == pytest.approx(predicted.json()["predictions"][0]["probabilities"], abs=1e-6)
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["id"] for r in table] == [f"r{i}" for i in range(300)] and table[3]["error"] == "the text is empty"
    assert sum(summary["labels"].values()) == 298 and summary["failed"] == 2 and summary["rows"] == 300
    assert sum(summary["confidence"]["counts"]) == 298 and summary["languages"]
    assert all(x["text"] in REVIEWS for x in summary["most_negative"] + summary["most_positive"])


def test_a_retried_submission_is_the_same_job_and_another_key_sees_nothing(server: str, tmp_path: Path) -> None:
    source = review_file(tmp_path, 20, bad=False)
    with SentimentClient(server, api_key="key-a") as a, SentimentClient(server, api_key="key-b") as b:
        first = a.submit_job(source, idempotency_key="upload-1")
        again = a.submit_job(source, idempotency_key="upload-1")
        assert again.id == first.id
        assert len(first.id) >= 24  # 144 random bits, URL-safe
        with pytest.raises(NotFoundError):
            b.job(first.id)
        with pytest.raises(NotFoundError):
            b.job(first.id).cancel()
        assert first.id not in [j.id for j in b.jobs()] and first.id in [j.id for j in a.jobs()]
        first.wait(progress=False, timeout_s=60)
    anonymous = httpx.get(f"{server}/jobs/{first.id}")
    assert anonymous.status_code == 401


def test_what_cannot_make_a_job_is_refused_at_submission_naming_it(server: str, tmp_path: Path) -> None:
    auth = {"Authorization": "Bearer key-a"}
    csv_type = {**auth, "Content-Type": "text/csv"}

    def post(body: bytes, headers: dict[str, str], **params: str) -> httpx.Response:
        return httpx.post(f"{server}/jobs", content=body, headers=headers, params=params, timeout=30)

    missing = post(b"id,review\n1,Fine.\n", csv_type)
    assert (
        missing.status_code == 422
        and "text: no such column (columns: id, review)" in missing.json()["error"]["message"]
    )
    assert post(b"id,review\n1,Fine.\n", csv_type, text_column="review").status_code == 202
    bad_id = post(b"id,text\n1,Fine.\n", csv_type, id_column="key")
    assert bad_id.status_code == 422 and bad_id.json()["error"]["details"][0]["field"] == "key"
    task = post(b"id,text\n1,Fine.\n", csv_type, task="translate")
    assert task.status_code == 422 and "task: must be one of predict, analyze" in task.json()["error"]["message"]
    torn = post(
        b"--b\r\nContent-Disposition: form-data; name=", {**auth, "Content-Type": "multipart/form-data; boundary=b"}
    )
    assert torn.status_code == 422 and torn.json()["error"]["details"][0]["field"] == "file"
    blank = post(b"\n \x1c\n\n", {**auth, "Content-Type": "text/plain"})
    assert blank.status_code == 422 and blank.json()["error"]["message"] == "file: holds no rows"
    broken = post(b'{"text": broken\n', {**auth, "Content-Type": "application/x-ndjson"})
    assert broken.status_code == 422 and "none of its first 1 rows can be read" in broken.json()["error"]["message"]
    rows = post(b"text\n" + b"Fine.\n" * 5001, csv_type)
    assert rows.status_code == 413 and "SENTIMENT_JOBS_MAX_ROWS is 5,000" in rows.json()["error"]["message"]
    big = post(b"text\n" + b"x" * 500_000 + b"\n", csv_type)
    assert big.status_code == 413 and "SENTIMENT_JOBS_MAX_UPLOAD_BYTES" in big.json()["error"]["message"]
    bomb = gzip.compress(b"text\n" + b"Fine.\n" * 100_000)
    assert post(bomb, csv_type).status_code == 413  # small on the wire, over the limit once decoded
    zipped = post(gzip.compress(b"text\nFine.\nGood.\n"), csv_type)
    assert zipped.status_code == 202 and zipped.json()["rows"]["total"] == 2
    assert zipped.headers["location"] == f"/jobs/{zipped.json()['id']}"


def test_the_command_line_submits_waits_and_writes_the_results(server: str, tmp_path: Path) -> None:
    source = review_file(tmp_path, 40, bad=False)
    out = tmp_path / "out.csv"

    def jobs(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sentiment_client", "jobs", "--server", server, "--api-key", "key-a", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    done = jobs("submit", str(source), "--id-column", "id", "--wait", "-o", str(out))
    assert done.returncode == 0, done.stderr
    job_id = done.stderr.split()[1]
    assert [r["id"] for r in csv.DictReader(io.StringIO(out.read_text()))] == [f"r{i}" for i in range(40)]
    status = jobs("status", job_id)
    assert status.returncode == 0 and f"{job_id} succeeded: 40 of 40 rows" in status.stdout
    results = jobs("results", job_id, "--format", "jsonl")
    assert [json.loads(line)["row"] for line in results.stdout.splitlines()] == list(range(40))
    assert jobs("cancel", job_id).returncode == 0
    gone = jobs("status", job_id)
    assert gone.returncode == 1 and "404" in gone.stderr


def run_partly_then_kill(model_dir: Path, folder: Path, rows: int, **env: str) -> tuple[str, str]:
    """A server that takes a job of ``rows`` rows, killed with SIGKILL once a tenth are committed (far from
    the end: a poll may come a few chunks late); the job's id and the API's base for the next server."""
    base, process = launch(model_dir, folder / "first.log", SENTIMENT_JOBS_LEASE_S="2", **env)
    try:
        source = review_file(folder, rows, bad=False)
        with SentimentClient(base) as client:
            job = client.submit_job(source, id_column="id")
            until(lambda: job.refresh().info["rows"]["done"] >= rows // 10, 120, lambda: str(job.info))
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    return job.id, base


def resumed_results(model_dir: Path, folder: Path, job_id: str, rows: int, **env: str) -> list[dict[str, object]]:
    base, process = launch(model_dir, folder / "second.log", SENTIMENT_JOBS_LEASE_S="2", **env)
    try:
        with SentimentClient(base) as client:
            job = client.job(job_id)
            assert job.state == "running" and 0 < job.info["rows"]["done"] < rows  # as the killed process left it
            job.wait(progress=False, timeout_s=180)
            return list(job.results())
    finally:
        stop_server(process)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_server_killed_mid_job_resumes_it_with_every_row_exactly_once(
    tiny_model_dir: Path, tmp_path: Path, database: str
) -> None:
    rows = 20_000
    env = {"SENTIMENT_JOBS_DIR": str(tmp_path / "data")}
    with postgres_server() if database == "postgresql" else contextlib.nullcontext() as url:
        if url:
            env["SENTIMENT_JOBS_DATABASE_URL"] = url
        job_id, _ = run_partly_then_kill(tiny_model_dir, tmp_path, rows, **env)
        results = resumed_results(tiny_model_dir, tmp_path, job_id, rows, **env)
    assert [r["row"] for r in results] == list(range(rows))
    assert [r["id"] for r in results] == [f"r{i}" for i in range(rows)]
    assert all("label" in r for r in results)


def test_with_two_processes_one_runs_a_job_and_either_answers_for_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    base, process = launch(
        tiny_model_dir, tmp_path / "server.log", SENTIMENT_PROCESSES="2", SENTIMENT_JOBS_DIR=str(tmp_path / "data")
    )
    try:
        with SentimentClient(base) as client:
            jobs = [client.submit_job(review_file(tmp_path, 500, bad=False)) for _ in range(3)]
            for job in jobs:
                job.wait(progress=False, timeout_s=120)
                assert [r["row"] for r in job.results()] == list(range(500))
        until(lambda: metric(base, 'sentiment_jobs{state="succeeded"}') == 3, 30)  # gauges follow within a poll
        assert metric(base, "sentiment_job_rows_scored_total") == 1500
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        stop_server(process)


def test_a_cancelled_job_stops_and_its_files_are_deleted(server: str, tmp_path: Path) -> None:
    with SentimentClient(server, api_key="key-b") as client:
        job = client.submit_job(review_file(tmp_path, 4000, bad=False))
        job.cancel()
        assert job.refresh().state == "cancelled"
        with pytest.raises(Exception, match="409"):
            list(job.results())
        with pytest.raises(InvalidInputError):
            client.submit_job(tmp_path / "reviews.csv", text_column="nope")


def test_queued_jobs_and_stored_results_are_bounded_naming_the_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    base, process = launch(
        tiny_model_dir,
        tmp_path / "server.log",
        SENTIMENT_JOBS_DIR=str(tmp_path / "data"),
        SENTIMENT_JOBS_MAX_QUEUED="1",
        SENTIMENT_JOBS_MAX_STORED_BYTES="5000",
    )
    try:
        with SentimentClient(base, max_retries=0) as client:
            first = client.submit_job(review_file(tmp_path, 3000, bad=False))
            with pytest.raises(Exception, match="429") as busy:
                client.submit_job(review_file(tmp_path, 10, bad=False))
            assert "SENTIMENT_JOBS_MAX_QUEUED is 1" in str(busy.value)
            first.wait(progress=False, timeout_s=120)
            with pytest.raises(Exception, match="429") as full:
                client.submit_job(review_file(tmp_path, 10, bad=False))
            assert "SENTIMENT_JOBS_MAX_STORED_BYTES is 5,000" in str(full.value)
            first.cancel()  # deletes its results: room again
            assert client.submit_job(review_file(tmp_path, 10, bad=False)).wait(progress=False, timeout_s=60)
    finally:
        stop_server(process)


def test_a_job_id_can_be_given_on_a_command_line(tmp_path: Path) -> None:
    """Ids are hex: none begins with "-", which the file command would read as an option (URL-safe base64
    began so once in 64 ids)."""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    spec = {"task": "predict", "format": "text", "text_field": "text", "id_field": None, "name": None}
    ids = [store.create("", None, spec, 1, b"Fine.\n", 60)[0].id for _ in range(300)]
    assert len(set(ids)) == 300 and not [i for i in ids if not i.isalnum()]
