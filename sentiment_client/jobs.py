"""Jobs through the blocking client: files too big for one request (the service's ``/jobs``).

    with SentimentClient("http://localhost:8000") as client:
        job = client.submit_job("reviews.csv", text_column="review", id_column="id")
        job.wait()                                   # a progress bar on stderr until it is done
        for row in job.results():                   # streamed: every input row once, in order
            print(row["id"], row.get("label"), row.get("error"))

A submission carries an ``Idempotency-Key`` (a fresh one unless given), so a retried upload is the same job.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm import tqdm

from sentiment_client.errors import SentimentError

Opener = Callable[[], IO[bytes]]


class JobsClient(Protocol):
    """What a job needs of a client (``SentimentClient`` has it)."""

    def request_json(self, method: str, path: str) -> Any: ...

    def upload(self, path: str, body: Opener, params: dict[str, str], headers: dict[str, str]) -> Any: ...

    def stream_lines(self, path: str, params: dict[str, str]) -> Iterator[str]: ...


MEDIA_TYPES = {".csv": "text/csv", ".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson"}
FINISHED = ("succeeded", "failed", "cancelled")


def media_type(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return MEDIA_TYPES.get(suffixes[-1] if suffixes else "", "text/plain")


class JobFailedError(SentimentError):
    """The job ended failed or cancelled; ``message`` says why."""


class Job:
    """A job on the service: its last known state (``info``), refreshed by ``refresh`` and ``wait``."""

    def __init__(self, client: JobsClient, info: dict[str, Any]) -> None:
        self.client, self.info = client, info

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def state(self) -> str:
        return str(self.info["state"])

    def refresh(self) -> Job:
        self.info = self.client.request_json("GET", f"/jobs/{self.id}")
        return self

    def wait(self, progress: bool = True, poll_s: float = 1.0, timeout_s: float | None = None) -> Job:
        """Until the job has finished (JobFailedError if it failed or was cancelled), with a progress bar on
        stderr unless not ``progress``."""
        started = time.monotonic()
        with tqdm(total=self.info["rows"]["total"], unit=" rows", disable=not progress, dynamic_ncols=True) as bar:
            while True:
                rows = self.info["rows"]
                bar.update(rows["done"] + rows["failed"] - bar.n)
                if self.state in FINISHED:
                    break
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"job {self.id} is still {self.state} after {timeout_s} s")
                time.sleep(poll_s)
                self.refresh()
        if self.state != "succeeded":
            raise JobFailedError(0, self.state, f"job {self.id} {self.state}: {self.info.get('error') or ''}".strip())
        return self

    def results(self) -> Iterator[dict[str, Any]]:
        """Every input row's result, in input order, as it streams in (JSON Lines)."""
        for line in self.client.stream_lines(f"/jobs/{self.id}/results", {"format": "jsonl"}):
            yield json.loads(line)

    def download(self, path: Path | str, fmt: str = "csv") -> Path:
        """The results written to ``path`` (CSV or JSON Lines), streamed."""
        target = Path(path)
        with target.open("w", encoding="utf-8", newline="") as out:
            for line in self.client.stream_lines(f"/jobs/{self.id}/results", {"format": fmt}):
                out.write(line + "\n")
        return target

    def summary(self) -> dict[str, Any]:
        return dict(self.client.request_json("GET", f"/jobs/{self.id}/summary"))

    def cancel(self) -> None:
        """Cancel the job and delete its files on the service."""
        self.client.request_json("DELETE", f"/jobs/{self.id}")


def submit(
    client: JobsClient,
    path: Path | str,
    text_column: str = "text",
    id_column: str | None = None,
    task: str = "predict",
    fmt: str | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Upload the file at ``path`` (CSV, JSON Lines or text; gzip too) as a job; the file is streamed from
    disk, and read again for a retry."""
    source = Path(path)
    params = {"task": task, "text_column": text_column, "name": source.name}
    params |= {k: v for k, v in (("id_column", id_column), ("format", fmt)) if v}
    headers = {"Content-Type": media_type(source), "Idempotency-Key": idempotency_key or uuid.uuid4().hex}

    def body() -> IO[bytes]:
        return source.open("rb")

    return Job(client, client.upload("/jobs", body, params, headers))
