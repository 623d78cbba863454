"""The asyncio client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from sentiment_client.common import ClientBase, check_texts, chunks, document_batches
from sentiment_client.errors import InvalidInputError
from sentiment_client.results import Document, Explanation, Prediction, document_from, explanation_from, prediction_from


class AsyncSentimentClient(ClientBase):
    """The asyncio twin of :class:`SentimentClient`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_retry_wait: float = 30.0,
        batch_size: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries, max_retry_wait, batch_size)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def predict(self, texts: Sequence[str]) -> list[Prediction]:
        check_texts(texts)
        size = self.batch_size or (await self.limits())["max_client_batch"]
        out: list[Prediction] = []
        for chunk in chunks(texts, size):
            answer = await self._request("POST", "/predict", {"texts": chunk})
            out += [prediction_from(p) for p in answer["predictions"]]
        return out

    async def predict_one(self, text: str) -> Prediction:
        return prediction_from((await self._request("POST", "/predict", {"text": text}))["predictions"][0])

    async def explain(self, texts: Sequence[str]) -> list[Explanation]:
        check_texts(texts)
        size = (await self.limits())["max_explain_texts"]
        out: list[Explanation] = []
        for chunk in chunks(texts, size):
            answer = await self._request("POST", "/explain", {"texts": chunk})
            out += [explanation_from(e) for e in answer["explanations"]]
        return out

    async def analyze(self, documents: Sequence[str]) -> list[Document]:
        check_texts(documents)
        out: list[Document] = []
        for start, batch in document_batches(documents, await self.limits()):
            out += await self._analyze(batch, start)
        return out

    async def _analyze(self, batch: list[str], start: int) -> list[Document]:
        """One request, split in two while the server finds it over its sentence limit."""
        try:
            answer = await self._request("POST", "/analyze", {"documents": batch})
        except InvalidInputError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            return await self._analyze(batch[:half], start) + await self._analyze(batch[half:], start + half)
        return [document_from(d, start) for d in answer["documents"]]

    async def limits(self) -> dict[str, int]:
        return (await self._model())["limits"]  # type: ignore[no-any-return]

    async def labels(self) -> list[str]:
        """The labels of the model in service, in its order."""
        return list((await self._model())["labels"])

    async def _model(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = await self._request("GET", "/model")
        return self._model_info

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        retry = self.retry_budget()
        while True:
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                await asyncio.sleep(retry.delay_after(failure=exc))
                continue
            if response.is_success:
                return response.json()
            await asyncio.sleep(retry.delay_after(response))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSentimentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
