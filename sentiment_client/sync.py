"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from sentiment_client.common import ClientBase, check_texts, chunks, document_batches
from sentiment_client.errors import InvalidInputError
from sentiment_client.jobs import Job, Opener, submit
from sentiment_client.results import Document, Explanation, Prediction, document_from, explanation_from, prediction_from


class SentimentClient(ClientBase):
    """Blocking client. ``batch_size`` overrides the server's per-request limit (it can only be lower)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_retry_wait: float = 30.0,
        batch_size: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries, max_retry_wait, batch_size)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in input order."""
        check_texts(texts)
        size = self.batch_size or self.limits()["max_client_batch"]
        return [
            prediction_from(p)
            for chunk in chunks(texts, size)
            for p in self._request("POST", "/predict", {"texts": chunk})["predictions"]
        ]

    def predict_one(self, text: str) -> Prediction:
        return prediction_from(self._request("POST", "/predict", {"text": text})["predictions"][0])

    def explain(self, texts: Sequence[str]) -> list[Explanation]:
        """Word weights for each text (occlusion; see the service's /explain)."""
        check_texts(texts)
        size = self.limits()["max_explain_texts"]
        return [
            explanation_from(e)
            for chunk in chunks(texts, size)
            for e in self._request("POST", "/explain", {"texts": chunk})["explanations"]
        ]

    def analyze(self, documents: Sequence[str]) -> list[Document]:
        """Each document read sentence by sentence, with its verdict, in input order (see the service's
        /analyze); a document the server could not score carries its ``error``."""
        check_texts(documents)
        return [d for start, batch in document_batches(documents, self.limits()) for d in self._analyze(batch, start)]

    def _analyze(self, batch: list[str], start: int) -> list[Document]:
        """One request, split in two while the server finds it over its sentence limit."""
        try:
            answer = self._request("POST", "/analyze", {"documents": batch})
        except InvalidInputError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            return self._analyze(batch[:half], start) + self._analyze(batch[half:], start + half)
        return [document_from(d, start) for d in answer["documents"]]

    def limits(self) -> dict[str, int]:
        return self._model()["limits"]  # type: ignore[no-any-return]

    def labels(self) -> list[str]:
        """The labels of the model in service, in its order."""
        return list(self._model()["labels"])

    def _model(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = self._request("GET", "/model")
        return self._model_info

    # ------------------------------------------------------------------------------------------- jobs

    def submit_job(
        self,
        path: Path | str,
        text_column: str = "text",
        id_column: str | None = None,
        task: str = "predict",
        format: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """A file too big for one request, as a job on the service (sentiment_client.jobs)."""
        return submit(self, path, text_column, id_column, task, format, idempotency_key)

    def job(self, job_id: str) -> Job:
        return Job(self, self.request_json("GET", f"/jobs/{job_id}"))

    def jobs(self) -> list[Job]:
        return [Job(self, info) for info in self.request_json("GET", "/jobs")["jobs"]]

    def request_json(self, method: str, path: str) -> Any:
        """A request without a body: its JSON answer (None for 204), retried as every call is."""
        return self._send(lambda: self._http.request(method, path))

    def upload(self, path: str, body: Opener, params: dict[str, str], headers: dict[str, str]) -> Any:
        """POST a file (opened anew by ``body`` for each attempt) and return the JSON answer."""

        def attempt() -> httpx.Response:
            with body() as stream:
                return self._http.post(path, content=stream, params=params, headers=headers)

        return self._send(attempt)

    def stream_lines(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """The lines of a streamed answer as they arrive (the request retried until the answer starts)."""
        retry = self.retry_budget()
        while True:
            try:
                with self._http.stream("GET", path, params=params, timeout=None) as response:
                    if response.is_success:
                        yield from response.iter_lines()
                        return
                    response.read()
                    delay = retry.delay_after(response)
            except httpx.TransportError as exc:
                delay = retry.delay_after(failure=exc)
            time.sleep(delay)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        return self._send(lambda: self._http.request(method, path, json=body))

    def _send(self, attempt: Callable[[], httpx.Response]) -> Any:
        retry = self.retry_budget()
        while True:
            try:
                response = attempt()
            except httpx.TransportError as exc:
                time.sleep(retry.delay_after(failure=exc))
                continue
            if response.is_success:
                return response.json() if response.content else None
            time.sleep(retry.delay_after(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
