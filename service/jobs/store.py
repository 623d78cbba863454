"""Where jobs live: a real database, SQLite by default (one file in the data directory), PostgreSQL when
``SENTIMENT_JOBS_DATABASE_URL`` names one. Everything a job is sits in it (its record, its upload, its
results), so any process that reaches the database can answer for a job, and run it.

Durability is by transaction: a chunk of results and the job's progress are written in one transaction, the
chunk keyed by its number, so a process killed at any moment leaves either the whole chunk or none of it,
and the next process resumes at the first row no chunk holds (nothing lost, nothing twice). A job is run by
the process that holds its lease (``take``, renewed with every chunk); a lease that runs out (its process
died) lets another take the job over.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
UPLOAD_PART = 1 << 20  # bytes of the upload per row of the uploads table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, idempotency_key TEXT, state TEXT NOT NULL, task TEXT NOT NULL,
    format TEXT NOT NULL, text_field TEXT NOT NULL, id_field TEXT, name TEXT, total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION, finished DOUBLE PRECISION, expires DOUBLE PRECISION NOT NULL, error TEXT,
    lease_owner TEXT, lease_until DOUBLE PRECISION, result_bytes BIGINT NOT NULL DEFAULT 0, summary TEXT,
    UNIQUE (owner, idempotency_key));
CREATE TABLE IF NOT EXISTS uploads (
    job_id TEXT NOT NULL, part INTEGER NOT NULL, data {blob} NOT NULL, PRIMARY KEY (job_id, part));
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL, first_row INTEGER NOT NULL, rows INTEGER NOT NULL, body {blob} NOT NULL,
    PRIMARY KEY (job_id, first_row));
"""


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    idempotency_key: str | None
    state: str
    task: str
    format: str
    text_field: str
    id_field: str | None
    name: str | None
    total: int
    done: int
    failed: int
    created: float
    started: float | None
    finished: float | None
    expires: float
    error: str | None
    lease_owner: str | None
    lease_until: float | None
    result_bytes: int
    summary: str | None

    @property
    def next_row(self) -> int:
        return self.done + self.failed


COLUMNS = ", ".join(f.name for f in fields(Job))


class JobStore:
    """The jobs database (module docstring). Thread-safe: one connection per store, used under a lock (the
    web layer calls it from worker threads)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._lock = threading.Lock()
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise RuntimeError(
                    "SENTIMENT_JOBS_DATABASE_URL names PostgreSQL, but psycopg is not installed "
                    "(pip install 'sentiment-service[postgres]')"
                ) from None
            self._db: Any = psycopg.connect(url, autocommit=False)
        else:
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
        with self._transaction() as db:
            for statement in _SCHEMA.format(blob="BYTEA" if self.postgres else "BLOB").split(";"):
                if statement.strip():
                    db.execute(statement)

    # ------------------------------------------------------------------------------------------- plumbing

    class _Cursor:
        def __init__(self, store: JobStore) -> None:
            self.store = store
            self.rowcount = 0

        def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            if self.store.postgres:
                sql = sql.replace("?", "%s")
            cursor = self.store._db.execute(sql, tuple(params))
            self.rowcount = cursor.rowcount
            return list(cursor.fetchall()) if cursor.description else []

    def _transaction(self) -> Any:
        store = self

        class Transaction:
            def __enter__(self) -> JobStore._Cursor:
                store._lock.acquire()
                if not store.postgres:
                    store._db.execute("BEGIN IMMEDIATE")
                return JobStore._Cursor(store)

            def __exit__(self, kind: object, *_: object) -> None:
                try:
                    if kind is None:
                        store._db.commit() if store.postgres else store._db.execute("COMMIT")
                    else:
                        store._db.rollback() if store.postgres else store._db.execute("ROLLBACK")
                finally:
                    store._lock.release()

        return Transaction()

    def _one(self, sql: str, params: Sequence[Any]) -> Job | None:
        with self._transaction() as db:
            found = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE {sql}", params)
        return Job(*found[0]) if found else None

    # ------------------------------------------------------------------------------------------- jobs

    def create(
        self, owner: str, key: str | None, spec: dict[str, Any], total: int, upload: bytes, retention_s: float
    ) -> tuple[Job, bool]:
        """A new queued job with its upload (and whether it is new): the job this owner already submitted
        under the same idempotency ``key``, if any."""
        if key is not None and (known := self.get_by_key(owner, key)) is not None:
            return known, False
        # 144 random bits, in hex: never a leading "-", which a command line would read as an option
        job_id, now = secrets.token_hex(18), time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, owner, idempotency_key, state, task, format, text_field, id_field, name, total, "
                "created, expires) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    owner,
                    key,
                    spec["task"],
                    spec["format"],
                    spec["text_field"],
                    spec.get("id_field"),
                    spec.get("name"),
                    total,
                    now,
                    now + retention_s,
                ),
            )
            for part, start in enumerate(range(0, max(len(upload), 1), UPLOAD_PART)):
                db.execute(
                    "INSERT INTO uploads (job_id, part, data) VALUES (?, ?, ?)",
                    (job_id, part, upload[start : start + UPLOAD_PART]),
                )
        job = self.get(job_id)
        assert job is not None
        return job, True

    def get_by_key(self, owner: str, key: str) -> Job | None:
        return self._one("owner = ? AND idempotency_key = ?", (owner, key))

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None (also when ``owner`` is given and it is someone else's)."""
        if owner is None:
            return self._one("id = ?", (job_id,))
        return self._one("id = ? AND owner = ?", (job_id, owner))

    def owned(self, owner: str) -> list[Job]:
        with self._transaction() as db:
            found = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE owner = ? ORDER BY created DESC", (owner,))
        return [Job(*row) for row in found]

    def queued(self) -> int:
        with self._transaction() as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")[0][0])

    def counts(self) -> dict[str, int]:
        with self._transaction() as db:
            found = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return {state: int(found.get(state, 0)) for state in STATES}

    def stored_bytes(self) -> int:
        with self._transaction() as db:
            return int(db.execute("SELECT COALESCE(SUM(result_bytes), 0) FROM jobs")[0][0])

    def upload(self, job_id: str) -> bytes:
        with self._transaction() as db:
            parts = db.execute("SELECT data FROM uploads WHERE job_id = ? ORDER BY part", (job_id,))
        return b"".join(bytes(data) for (data,) in parts)

    # ------------------------------------------------------------------------------------------- running

    def take(self, worker: str, lease_s: float) -> Job | None:
        """Lease the oldest job that is queued, or running under a lease that has run out (its process died),
        to ``worker``; None when there is none. Two workers never get the same job."""
        now = time.time()
        runnable = "(state = 'queued' OR (state = 'running' AND lease_until < ?))"
        with self._transaction() as db:
            db.execute(
                f"UPDATE jobs SET state = 'running', lease_owner = ?, lease_until = ?, started = COALESCE(started, ?) "
                f"WHERE id = (SELECT id FROM jobs WHERE {runnable} ORDER BY created LIMIT 1) AND {runnable}",
                (worker, now + lease_s, now, now, now),
            )
            if db.rowcount != 1:
                return None
        return self._one("lease_owner = ? AND state = 'running' ORDER BY lease_until DESC LIMIT 1", (worker,))

    def commit_chunk(
        self, job: Job, worker: str, first_row: int, results: list[dict[str, Any]], failed: int, lease_s: float
    ) -> None:
        """The chunk's results (rows ``first_row`` on) and the job's progress in one transaction, the lease
        renewed; NotMine (nothing written) when the job is no longer this worker's to run (cancelled, deleted,
        taken over) or the chunk is not the next one."""
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results).encode()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET done = done + ?, failed = failed + ?, result_bytes = result_bytes + ?, "
                "lease_until = ? WHERE id = ? AND lease_owner = ? AND state = 'running' AND done + failed = ?",
                (len(results) - failed, failed, len(body), time.time() + lease_s, job.id, worker, first_row),
            )
            if db.rowcount != 1:
                raise NotMine
            db.execute(
                "INSERT INTO results (job_id, first_row, rows, body) VALUES (?, ?, ?, ?)",
                (job.id, first_row, len(results), body),
            )

    def finish(
        self, job: Job, worker: str, state: str, error: str | None = None, summary: dict[str, Any] | None = None
    ) -> bool:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, summary = ?, finished = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND lease_owner = ? AND state = 'running'",
                (state, error, json.dumps(summary) if summary else None, time.time(), job.id, worker),
            )
            return bool(db.rowcount == 1)

    def state(self, job_id: str) -> str | None:
        with self._transaction() as db:
            found = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,))
        return str(found[0][0]) if found else None

    def results(self, job_id: str) -> Iterator[bytes]:
        """The result chunks in row order, each a block of JSON lines (read a chunk at a time)."""
        row = -1
        while True:
            with self._transaction() as db:
                found = db.execute(
                    "SELECT first_row, body FROM results WHERE job_id = ? AND first_row > ? ORDER BY first_row LIMIT 1",
                    (job_id, row),
                )
            if not found:
                return
            row = int(found[0][0])
            yield bytes(found[0][1])

    def cancel(self, job_id: str, owner: str) -> bool:
        """Delete the job's upload and results; a queued or running job is cancelled (a running one stops at its
        next chunk) and its record stays, ``cancelled``, until it expires; a finished one is deleted whole.
        False if there is no such job of this owner's."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, lease_owner = NULL, lease_until = NULL, "
                "result_bytes = 0 WHERE id = ? AND owner = ? AND state IN ('queued', 'running')",
                (time.time(), job_id, owner),
            )
            if db.rowcount != 1:
                db.execute("DELETE FROM jobs WHERE id = ? AND owner = ?", (job_id, owner))
                if db.rowcount != 1:
                    return False
            db.execute("DELETE FROM uploads WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
        return True

    def expire(self) -> int:
        """Delete the jobs past their expiry that no one runs; how many."""
        now = time.time()
        with self._transaction() as db:
            gone = [
                row[0] for row in db.execute("SELECT id FROM jobs WHERE expires < ? AND state != 'running'", (now,))
            ]
            for job_id in gone:
                for table, column in (("jobs", "id"), ("uploads", "job_id"), ("results", "job_id")):
                    db.execute(f"DELETE FROM {table} WHERE {column} = ?", (job_id,))
        return len(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NotMine(Exception):
    """The job is no longer this worker's to run."""
