"""The ``/jobs`` routes: submit a file, follow it, fetch its results and summary, cancel it (docs/jobs.md).

A job belongs to the API key that submitted it: another key gets 404 for it, as for a job that does not
exist (and ids are 144 random bits). Without keys, anyone who can reach the service sees every job.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from service.auth import check_api_key
from service.config import Settings
from service.errors import ApiError, json_response
from service.jobs import files
from service.jobs.store import Job, JobStore
from service.schemas import ErrorResponse

router = APIRouter(tags=["jobs"])
TASKS = ("predict", "analyze")
RESULT_FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        401: "an API key is required and this one is not known",
        404: "no job of that id is yours",
        409: "the job has not finished",
        413: "the file is over SENTIMENT_JOBS_MAX_UPLOAD_BYTES or SENTIMENT_JOBS_MAX_ROWS",
        422: "the file or an option is not usable (the field and the reason are named)",
        429: "too many jobs queued, or too many results kept (Retry-After)",
    }
    return {code: {"model": ErrorResponse, "description": what[code]} for code in codes}


# The file is the body (its format from Content-Type or ?format=), or a multipart form's ``file`` part.
# A text file with a line that is not blank (white space to Python: JSON Schema's \\s and \\x1c-\\x1f, \\x85).
_TEXT = {
    "type": "string",
    "pattern": "[^\\s\\x1c-\\x1f\\x85]",
    "description": "one text per line (blank lines skipped)",
}
_UPLOAD = {
    "required": True,
    "content": {
        "text/plain": {"schema": _TEXT},
        "text/csv": {"schema": {"type": "string", "description": "a header row naming the text column, then rows"}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON object per line"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    **{name: {"type": "string"} for name in ("task", "text_column", "id_column", "format", "name")},
                },
            }
        },
    },
}


def _store(request: Request) -> JobStore:
    store: JobStore | None = getattr(request.app.state, "job_store", None)
    if store is None:
        raise ApiError(503, "not_ready", "the job store is not open yet", headers={"Retry-After": "1"})
    return store


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.engine.settings
    return settings


def public(job: Job) -> dict[str, Any]:
    """What a job's owner is told of it."""
    now = time.time()
    elapsed = (job.finished or now) - job.started if job.started else 0.0
    rate = job.next_row / elapsed if elapsed > 0 and job.next_row else None
    left = (job.total - job.next_row) / rate if rate and job.state == "running" else None
    return {
        "id": job.id,
        "state": job.state,
        "task": job.task,
        "name": job.name,
        "rows": {"total": job.total, "done": job.done, "failed": job.failed},
        "rows_per_second": None if rate is None else round(rate, 1),
        "seconds_left": None if left is None else round(left, 1),
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "expires": job.expires,
        "error": job.error,
        "links": {
            "self": f"/jobs/{job.id}",
            "results": f"/jobs/{job.id}/results",
            "summary": f"/jobs/{job.id}/summary",
        },
    }


def _found(store: JobStore, job_id: str, owner: str) -> Job:
    job = store.get(job_id, owner)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} of yours")
    return job


async def _upload(request: Request) -> tuple[bytes, dict[str, str]]:
    """The uploaded file and the job's options: a multipart form (a ``file`` part, the options as fields) or
    the file as the body (the options in the query)."""
    options = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1)
        except HTTPException as exc:  # Starlette's 400 for a multipart body it cannot read
            raise _invalid("file", f"the multipart body cannot be read ({exc.detail})") from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                422,
                "validation_error",
                "file: a multipart upload needs a part named 'file'",
                details=[{"field": "file", "message": "missing"}],
            )
        options |= {k: v for k, v in form.items() if isinstance(v, str)}
        options.setdefault("filename", upload.filename or "")
        options.setdefault("content_type", upload.content_type or "")
        return await upload.read(), options
    options.setdefault("content_type", request.headers.get("content-type", ""))
    return await request.body(), options


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", details=[{"field": field, "message": message}])


def _spec(options: dict[str, str]) -> dict[str, Any]:
    task = options.get("task", "predict")
    if task not in TASKS:
        raise _invalid("task", f"must be one of {', '.join(TASKS)}, not {task!r}")
    fmt = options.get("format") or files.guess_format(options.get("content_type"), options.get("filename"))
    return {
        "task": task,
        "format": fmt,
        "text_field": options.get("text_column") or "text",
        "id_field": options.get("id_column") or None,
        "name": options.get("name") or options.get("filename") or None,
    }


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a file as a job",
    responses=_answers(401, 413, 422, 429),
    openapi_extra={"requestBody": _UPLOAD},
)
async def submit(request: Request) -> Response:
    """The file (CSV, JSON Lines or plain text, gzip accepted) as the body or a multipart ``file`` part; query
    or form fields ``task`` (predict or analyze), ``text_column``, ``id_column``, ``format``, ``name``. The
    header and first rows are checked before the job is made; ``Idempotency-Key`` makes a retried submission
    the same job. 202 with ``Location``."""
    settings, store = _settings(request), _store(request)
    owner = check_api_key(request.headers, settings)
    body, options = await _upload(request)
    spec = _spec(options)
    try:
        data = files.decompressed(body, settings.jobs_max_upload_bytes)
        layout = files.Layout(spec["format"], spec["text_field"], spec["id_field"])
        await asyncio.to_thread(files.check, data, layout)
        total = await asyncio.to_thread(files.count, data, layout)
    except files.UploadError as exc:
        status = 413 if "SENTIMENT_JOBS_MAX_UPLOAD_BYTES" in exc.message else 422
        raise ApiError(
            status, "validation_error", str(exc), details=[{"field": exc.field, "message": exc.message}]
        ) from None
    if total > settings.jobs_max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"the file holds {total:,} rows; SENTIMENT_JOBS_MAX_ROWS is {settings.jobs_max_rows:,}",
        )
    key = request.headers.get("idempotency-key")
    if key is None or store.get_by_key(owner, key) is None:
        await _check_room(store, settings)
    job, _ = await asyncio.to_thread(store.create, owner, key, spec, total, data, settings.jobs_retention_s)
    return json_response(public(job), 202, {"Location": f"/jobs/{job.id}"})


async def _check_room(store: JobStore, settings: Settings) -> None:
    queued = await asyncio.to_thread(store.queued)
    if queued >= settings.jobs_max_queued:
        raise ApiError(
            429,
            "too_many_jobs",
            f"{queued} jobs are queued or running; SENTIMENT_JOBS_MAX_QUEUED is {settings.jobs_max_queued}",
            headers={"Retry-After": "30"},
        )
    stored = await asyncio.to_thread(store.stored_bytes)
    if stored >= settings.jobs_max_stored_bytes:
        raise ApiError(
            429,
            "storage_full",
            f"results of {stored:,} bytes are kept; SENTIMENT_JOBS_MAX_STORED_BYTES is "
            f"{settings.jobs_max_stored_bytes:,} (delete finished jobs, or wait until they expire)",
            headers={"Retry-After": "60"},
        )


@router.get("/jobs", summary="Your jobs", responses=_answers(401))
async def list_jobs(request: Request) -> Response:
    owner = check_api_key(request.headers, _settings(request))
    jobs = await asyncio.to_thread(_store(request).owned, owner)
    return json_response({"jobs": [public(job) for job in jobs]})


@router.get("/jobs/{job_id}", summary="A job's state and progress", responses=_answers(401, 404))
async def status(job_id: str, request: Request) -> Response:
    owner = check_api_key(request.headers, _settings(request))
    return json_response(public(await asyncio.to_thread(_found, _store(request), job_id, owner)))


def _finished(job: Job) -> None:
    if job.state != "succeeded":
        message = f"the job is {job.state} ({job.next_row:,} of {job.total:,} rows done)"
        raise ApiError(409, "not_finished", message + ("; " + job.error if job.error else ""))


@router.get(
    "/jobs/{job_id}/summary", summary="What a finished job's results amount to", responses=_answers(401, 404, 409)
)
async def summary(job_id: str, request: Request) -> Response:
    owner = check_api_key(request.headers, _settings(request))
    job = await asyncio.to_thread(_found, _store(request), job_id, owner)
    _finished(job)
    return json_response({"id": job.id, "task": job.task, **json.loads(job.summary or "{}")})


@router.get(
    "/jobs/{job_id}/results",
    summary="A finished job's results, every input row once, in order",
    responses=_answers(401, 404, 409),
)
async def results(job_id: str, request: Request, format: str | None = None) -> Response:
    """CSV or JSON Lines, by ``?format=`` or ``Accept``; streamed."""
    owner = check_api_key(request.headers, _settings(request))
    store = _store(request)
    job = await asyncio.to_thread(_found, store, job_id, owner)
    _finished(job)
    accept = request.headers.get("accept", "")
    chosen = format or ("csv" if "text/csv" in accept else "jsonl")
    if chosen not in RESULT_FORMATS:
        raise _invalid("format", f"must be csv or jsonl, not {chosen!r}")
    labels = list(request.app.state.engine.model.labels)
    lines = _csv(store.results(job.id), job, labels) if chosen == "csv" else store.results(job.id)
    name = f"{job.id}.{chosen}"
    return StreamingResponse(
        _off_loop(lines),
        media_type=RESULT_FORMATS[chosen],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _off_loop(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each block read from the store on a worker thread, sent as it comes."""
    while (block := await asyncio.to_thread(next, blocks, None)) is not None:
        yield block


def _csv(blocks: Iterator[bytes], job: Job, labels: list[str]) -> Iterator[bytes]:
    columns = [
        "row",
        "line",
        "id",
        "label",
        *(["score"] if job.task == "predict" else []),
        *(f"p_{label}" for label in labels),
        "language",
        *(["sentences"] if job.task == "analyze" else []),
        "error",
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for block in blocks:
        for line in block.splitlines():
            result = json.loads(line)
            row = {**result, **{f"p_{k}": round(v, 6) for k, v in result.get("probabilities", {}).items()}}
            row["language"] = (result.get("language") or {}).get("code") or ""
            if "sentences" in result:
                row["sentences"] = len(result["sentences"])
            if "score" in row:
                row["score"] = round(row["score"], 6)
            writer.writerow(row)
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue().encode()


@router.delete(
    "/jobs/{job_id}", status_code=204, summary="Cancel a job and delete its files", responses=_answers(401, 404)
)
async def cancel(job_id: str, request: Request) -> Response:
    owner = check_api_key(request.headers, _settings(request))
    if not await asyncio.to_thread(_store(request).cancel, job_id, owner):
        raise ApiError(404, "not_found", f"no job {job_id!r} of yours")
    return Response(status_code=204)


def register(app: FastAPI) -> None:
    app.include_router(router)
