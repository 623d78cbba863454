"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from sentiment_client.common import ClientBase, check_texts, chunks, document_batches
from sentiment_client.errors import InvalidInputError
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

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        retry = self.retry_budget()
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                time.sleep(retry.delay_after(failure=exc))
                continue
            if response.is_success:
                return response.json()
            time.sleep(retry.delay_after(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
