"""Baseline: the same network served the way tutorials do it: PyTorch eager mode behind a plain FastAPI
endpoint, one text per forward pass, no batching, no ONNX.

    python -m bench.baseline_server --model-dir models/sentiment-bilstm --port 8100

The PyTorch model is rebuilt from model.onnx's weights (training.export.model_from_onnx), so both
servers compute the same function; the startup check below proves it on a few texts.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from model_runtime import Predictor
from training.export import model_from_onnx
from training.model import BiLSTMClassifier


def torch_model_from_onnx(predictor: Predictor) -> BiLSTMClassifier:
    return model_from_onnx(predictor.model_dir / "model.onnx")


class Request(BaseModel):
    text: str | None = None
    texts: list[str] | None = None


def create_app(model_dir: str, threads: int) -> FastAPI:
    torch.set_num_threads(threads)
    predictor = Predictor.load(model_dir, provider="cpu", intra_op_threads=1)
    model = torch_model_from_onnx(predictor)
    tokenizer = predictor.tokenizer
    labels = predictor.labels
    probe = ["A wonderful film.", "Awful, boring and far too long. " * 30]
    with torch.no_grad():
        for text, expected in zip(probe, predictor.predict(probe), strict=True):
            ids = tokenizer.encode(text).ids or [0]
            got = torch.softmax(model(torch.tensor([ids]), torch.tensor([len(ids)])), dim=1)[0]
            assert abs(float(got.max()) - expected.score) < 1e-4, "baseline does not match the ONNX model"
    app = FastAPI()

    @app.post("/predict")
    def predict(request: Request) -> dict[str, Any]:
        texts = [request.text] if request.text is not None else request.texts or []
        out = []
        for text in texts:  # one text per forward pass
            encoding = tokenizer.encode(text)
            ids = encoding.ids or [0]
            with torch.no_grad():
                probs = torch.softmax(model(torch.tensor([ids]), torch.tensor([len(ids)])), dim=1)[0].tolist()
            best = int(np.argmax(probs))
            out.append(
                {
                    "label": labels[best],
                    "score": probs[best],
                    "probabilities": dict(zip(labels, probs, strict=True)),
                    "tokens": len(encoding.ids),
                    "truncated": bool(encoding.overflowing),
                }
            )
        return {"predictions": out}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        return {"status": "ready"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="models/sentiment-bilstm")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir, args.threads), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
