"""Running jobs: each server process polls the store for a job to run (``JobStore.take``: one process per job,
by lease), scores its rows a chunk at a time on the engine's jobs lane, which takes only capacity that live
requests leave (``service.batcher``: a job's slices never go before a queued request), and commits each
chunk's results with the job's progress in one transaction. A process killed mid-job leaves a lease that
runs out; whichever process takes the job next resumes at its first uncommitted row.

Each result row is one input row, in order: ``row`` (0-based), ``line`` (where it ends in the file), ``id``
(the id column's value, when named), then the prediction (``label``, ``score``, ``probabilities``,
``language``) or, for ``analyze``, the document (``label`` or ``mixed``, ``probabilities``, ``language``,
``sentences``), or ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from itertools import islice
from typing import Any

from model_runtime import Prediction, document_sentences, model_reads, read_back, readable
from model_runtime.batch import document_result, text_result
from service.budget import QueueFullError
from service.config import Settings
from service.engine import Engine
from service.jobs.files import Layout, Row, rows
from service.jobs.store import Job, JobStore, NotMine
from service.jobs.summary import summarise
from service.metrics import Metrics

log = logging.getLogger("service.jobs")
CHUNK_ROWS = 256  # rows per committed chunk
IN_FLIGHT = 2  # chunks scored at once (one is committed while the next is scored)
POLL_S = 1.0  # how often an idle process looks for a job


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class JobRunner:
    """One per server process: takes jobs from the store and runs them, one at a time."""

    def __init__(self, store: JobStore, engine: Engine, settings: Settings, metrics: Metrics) -> None:
        self.store, self.engine, self.settings, self.metrics = store, engine, settings, metrics
        self.worker = worker_name()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="jobs")

    async def stop(self) -> None:
        """Stop between chunks; a job that was running keeps its committed rows and is resumed later."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.store.expire)
                job = (
                    await asyncio.to_thread(self.store.take, self.worker, self.settings.jobs_lease_s)
                    if self.engine.ready
                    else None
                )
                if job is None:
                    await asyncio.sleep(POLL_S)
                    continue
                await self.run(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store out of reach, say: the job (if any) is taken over when its lease ends
                log.exception("job runner: a job could not be run; trying again")
                await asyncio.sleep(POLL_S)
            finally:
                self.metrics.observe_jobs(await asyncio.to_thread(self.store.counts))

    async def run(self, job: Job) -> None:
        """Score ``job``'s rows from its first uncommitted one, chunk by chunk, then finish it."""
        log.info("job started", extra={"job": job.id, "from_row": job.next_row, "rows": job.total})
        data = await asyncio.to_thread(self.store.upload, job.id)
        layout = Layout(job.format, job.text_field, job.id_field)
        remaining = islice(rows(data, layout), job.next_row, None)
        try:
            if self.settings.jobs_engine == "ray":
                await asyncio.to_thread(self._run_on_ray, job, list(remaining))
            else:
                await self._run_here(job, remaining)
        except NotMine:  # cancelled, deleted or taken over: stop here
            log.info("job stopped: no longer this process's", extra={"job": job.id})
            return
        except ValueError as exc:  # the file breaks off (a CSV field over the reader's limit, say)
            await asyncio.to_thread(self.store.finish, job, self.worker, "failed", str(exc))
            return
        summary = await asyncio.to_thread(summarise, self.store, job, data, layout)
        await asyncio.to_thread(self.store.finish, job, self.worker, "succeeded", None, summary)
        log.info("job done", extra={"job": job.id, "rows": job.total})

    async def _run_here(self, job: Job, remaining: Iterator[Row]) -> None:
        """On this process's engine, IN_FLIGHT chunks at a time, committed in order."""
        first_row = job.next_row
        pending: list[asyncio.Task[list[dict[str, Any]]]] = []
        try:
            for chunk in _chunks(remaining):
                pending.append(asyncio.ensure_future(self._score(job, chunk)))
                if len(pending) >= IN_FLIGHT:
                    first_row = await self._commit(job, first_row, await pending.pop(0))
            while pending:
                first_row = await self._commit(job, first_row, await pending.pop(0))
        finally:
            for task in pending:
                task.cancel()

    async def _commit(self, job: Job, first_row: int, results: list[dict[str, Any]]) -> int:
        await asyncio.to_thread(self._commit_now, job, first_row, results)
        return first_row + len(results)

    def _commit_now(self, job: Job, first_row: int, results: list[dict[str, Any]]) -> None:
        failed = sum("error" in r for r in results)
        self.store.commit_chunk(job, self.worker, first_row, results, failed, self.settings.jobs_lease_s)
        self.metrics.job_rows.inc(len(results))

    def _run_on_ray(self, job: Job, remaining: list[Row]) -> None:
        """On Ray Data (RAY_ADDRESS, else a local Ray): the good rows through actors that each load the model
        once (model_runtime.batch.BatchScorer, the actor ``python -m sentiment_bulk --engine ray`` uses), in
        order, committed a chunk at a time as they come back; the bad rows keep their errors."""
        from service.jobs.on_ray import scored_in_order

        checked = [self._checked(row) for row in remaining]
        good = [(k, row.text or "") for k, row in enumerate(remaining) if "error" not in checked[k]]
        settings, model = self.settings, self.engine.model
        scored = scored_in_order(good, model.model_dir, job.task, settings.max_sentences, settings.mixed_threshold)
        first_row, chunk = job.next_row, []
        for k, result in enumerate(checked):
            if "error" not in result:
                index, found = next(scored)
                assert index == k, (index, k)
                result |= found
            chunk.append(result)
            if len(chunk) == CHUNK_ROWS or k == len(checked) - 1:
                self._commit_now(job, first_row, chunk)
                first_row, chunk = first_row + len(chunk), []

    async def _score(self, job: Job, chunk: list[Row]) -> list[dict[str, Any]]:
        results = [self._checked(row) for row in chunk]
        good = [(i, row) for i, row in enumerate(chunk) if "error" not in results[i]]
        if job.task == "analyze":
            return await self._analyze(good, results)
        predictions = await self._predict([row.text or "" for _, row in good], languages=True)
        for (i, _), p in zip(good, predictions, strict=True):
            results[i] |= text_result(p)
        return results

    async def _analyze(self, good: list[tuple[int, Row]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each good row read as a document, sentence by sentence, with its verdict (as /analyze answers)."""
        documents = []
        for i, row in good:
            spans = document_sentences(row.text or "")
            if len(spans) > self.settings.max_sentences:
                results[i]["error"] = f"has {len(spans):,} sentences; the limit is {self.settings.max_sentences:,}"
            else:
                documents.append((i, row.text or "", spans))
        read = [(text, spans) for _, text, spans in documents]
        predictions = await self._predict(model_reads(read), languages=False)
        labels = self.engine.model.labels
        for (i, text, spans), (mine, whole) in zip(documents, read_back(predictions, read), strict=True):
            language = self.engine.language(text)
            results[i] |= document_result(spans, mine, labels, language, self.settings.mixed_threshold, whole)
        return results

    def _checked(self, row: Row) -> dict[str, Any]:
        """The row's result so far: where it is, and its error if it cannot be scored."""
        result: dict[str, Any] = {"row": row.index, "line": row.line, "id": row.id}
        if row.error is not None:
            result["error"] = row.error
        elif row.text is None or not readable(row.text):
            result["error"] = "the text is empty"
        elif len(row.text) > self.settings.max_text_chars:
            result["error"] = f"has {len(row.text):,} characters; the limit is {self.settings.max_text_chars:,}"
        return result

    async def _predict(self, texts: list[str], languages: bool) -> list[Prediction]:
        """The engine's predictions on its jobs lane, waiting while the lane is full."""
        while True:
            try:
                return (await self.engine.predict(texts, languages, lane="jobs"))[1]
            except QueueFullError as exc:
                await asyncio.sleep(max(0.05, min(exc.retry_after, 1.0)))


def _chunks(items: Iterator[Row]) -> Iterator[list[Row]]:
    while chunk := list(islice(items, CHUNK_ROWS)):
        yield chunk
