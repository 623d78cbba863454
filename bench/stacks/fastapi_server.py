"""Plain FastAPI + onnxruntime, the way a tutorial serves a model: each request scored on its own in the
thread pool, no batching across requests.

    BENCH_PORT=8000 python -m bench.stacks.fastapi_server     # POST /predict
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from bench.stacks import model, settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.predictor = model.load()
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
def predict(body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"predictions": model.score(request.app.state.predictor, model.texts_of(body))}


if __name__ == "__main__":
    uvicorn.run(
        "bench.stacks.fastapi_server:app",
        host="127.0.0.1",
        port=settings.PORT,
        log_level="warning",
        workers=settings.WORKERS,
    )
