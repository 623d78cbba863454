"""The int8 trial: quantize the exported model and keep it only if it stays accurate and batch-invariant."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime import ModelCard, Predictor
from model_runtime.contract import MODEL_FILE, TOKENIZER_FILE
from training.card import file_entries
from training.data import Example
from training.evaluate import evaluate_examples
from training.export import INVARIANCE_TOLERANCE, verification_texts

log = logging.getLogger(__name__)
RULE = "kept only if accuracy drops <= 0.3 points and batch invariance holds within 1e-5"


def try_int8(
    model_dir: Path, card: ModelCard, test: list[Example], fp32: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dynamic int8 quantization of model.onnx, evaluated on the test split (once); replaces model.onnx only
    if it loses <= 0.3 points against ``fp32`` (the float model's evaluation) AND stays batch-invariant
    within 1e-5. Returns the measured record and the int8 model's evaluation."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=model_dir.parent))
    try:
        quantize_dynamic(model_dir / MODEL_FILE, staging / MODEL_FILE, weight_type=QuantType.QInt8)
        shutil.copyfile(model_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        staged_files = {**card.files, **file_entries(staging, (MODEL_FILE, TOKENIZER_FILE))}
        predictor = Predictor.load(staging, provider="cpu", card=replace(card, files=staged_files))
        evaluation = evaluate_examples(predictor, predictor.labels, test, card.calibration or None)
        accuracy, fp32_accuracy = evaluation["overall"]["accuracy"], fp32["overall"]["accuracy"]
        texts = verification_texts(test, 24)
        longest = sorted(texts, key=len)[-3:]
        invariance = max(
            float(
                np.abs(
                    np.array(list(predictor.predict([t])[0].probabilities.values()))
                    - np.array(list(predictor.predict([t, *longest])[0].probabilities.values()))
                ).max()
            )
            for t in texts
        )
        kept = fp32_accuracy - accuracy <= 0.003 and invariance <= INVARIANCE_TOLERANCE
        record = {
            "tried": True,
            "kept": kept,
            "accuracy_fp32": fp32_accuracy,
            "accuracy_int8": accuracy,
            "invariance_max_abs_diff_int8": invariance,
            "bytes_int8": staged_files[MODEL_FILE].bytes,
            "rule": RULE,
        }
        log.info("int8: %s", record)
        if kept:
            shutil.copyfile(staging / MODEL_FILE, model_dir / MODEL_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record, evaluation
