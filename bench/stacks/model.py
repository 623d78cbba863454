"""What every stack in the comparison runs per batch: the same ``model_runtime.Predictor`` this service
uses (same tokenizer, same 800-token truncation, same length grouping within the same padded-token cap),
so the comparison measures the serving stacks, not the inference code.

Settings come from the environment, so each stack's launcher passes the same ones:
``BENCH_MODEL_DIR``, ``BENCH_PROVIDER`` (cpu or cuda), ``BENCH_THREADS`` (onnxruntime threads per worker
process), ``BENCH_MAX_BATCH_TOKENS`` (padded tokens per model run, 0 = one group; the service's setting for
the provider).
"""

from __future__ import annotations

import os
from typing import Any

from model_runtime import Predictor

MAX_BATCH_TOKENS = int(os.environ.get("BENCH_MAX_BATCH_TOKENS", "4096")) or None


def load() -> Predictor:
    predictor = Predictor.load(
        os.environ.get("BENCH_MODEL_DIR", "models/sentiment-bilstm"),
        provider=os.environ.get("BENCH_PROVIDER", "cpu"),  # type: ignore[arg-type]  # checked by Predictor
        intra_op_threads=int(os.environ.get("BENCH_THREADS", "1")),
    )
    predictor.warm_up()
    return predictor


def texts_of(body: dict[str, Any]) -> list[str]:
    """The texts of one request body: ``{"texts": [...]}`` (what the bench sends) or ``{"text": "..."}``."""
    texts = body.get("texts", [body.get("text")])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("body must be {'texts': [str, ...]} or {'text': str}")
    return texts


def score(predictor: Predictor, texts: list[str]) -> list[dict[str, Any]]:
    """One answer per text, in order: label, score and probabilities (what /predict answers, less metadata)."""
    return [
        {"label": p.label, "score": p.score, "probabilities": p.probabilities}
        for p in predictor.predict(texts, max_batch_tokens=MAX_BATCH_TOKENS)
    ]


def score_requests(predictor: Predictor, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dynamic batch of request bodies scored in one call (length-sorted across requests), split back."""
    per_request = [texts_of(b) for b in bodies]
    answers = score(predictor, [t for texts in per_request for t in texts])
    out, start = [], 0
    for texts in per_request:
        out.append({"predictions": answers[start : start + len(texts)]})
        start += len(texts)
    return out
