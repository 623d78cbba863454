"""The straight line from data to a shipped model directory:

    load data once -> split once -> train (-> the best network, calibrated, in memory) -> export + prove
    -> evaluate the test split once through the runtime -> (int8 trial) -> write the card once

Each step takes what the one before returned; nothing is loaded or split twice, nothing is read back
from the run directory, and the card is written at the end only, when every figure in it is measured.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from model_runtime import ModelCard, Predictor, read_card, write_card
from model_runtime.contract import SPLITS_FILE, TOKENIZER_FILE
from training.card import build_card, card_metrics
from training.config import TrainConfig
from training.crosscheck import register_report
from training.data import Dataset, Split, write_split_manifest
from training.evaluate import evaluate_examples, score, write_report
from training.export import export_model, load_best_model
from training.quantize import try_int8
from training.readme import render_readme
from training.sources import make_split, split_from_record
from training.train import TrainResult, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportSpec:
    model_dir: Path
    name: str
    version: str
    command: str  # how the model is reproduced, for the card


def run_all(
    dataset: Dataset, run_dir: Path, config: TrainConfig, export: ExportSpec, int8: bool = False, resume: bool = False
) -> ModelCard:
    """Train on ``dataset`` and ship the result to ``export.model_dir``."""
    started = time.perf_counter()
    split = make_split(dataset)
    result = train(dataset, split, run_dir, config, resume=resume)
    result.summary["training"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    return ship(result, split, export, int8)


def ship(result: TrainResult, split: Split, export: ExportSpec, int8: bool = False) -> ModelCard:
    """Export + prove, evaluate the test split through the runtime (once), optionally try int8, then
    write the card once."""
    model_dir = export.model_dir
    metadata = {"labels": json.dumps(result.summary["labels"]), "name": export.name, "version": export.version}
    report = export_model(result.model, result.tokenizer, model_dir, split.validation, metadata)
    write_split_manifest(split, model_dir / SPLITS_FILE)
    card = build_card(result.summary, result.history, report, model_dir, export)
    evaluation = evaluate_card_model(model_dir, card, split, result.history)
    if int8:
        trial, int8_evaluation = try_int8(model_dir, card, split.test, evaluation)
        card.quantization = {"int8": trial}
        if trial["kept"]:
            card = build_card(result.summary, result.history, report, model_dir, export, card.quantization)
            evaluation = int8_evaluation
            write_report(
                model_dir / "evaluation", _report_header(card, Predictor.load(model_dir, card=card)) | evaluation
            )
    card.metrics = {
        "test": card_metrics(evaluation),
        "measured_on": "model.onnx through onnxruntime (CPU) and tokenizer.json",
    }
    write_card(model_dir, card, render_readme(card))
    return card


def ship_existing_run(run_dir: Path, export: ExportSpec, int8: bool = False) -> ModelCard:
    """``python -m training export``: a finished run's directory (its record, best weights and tokenizer);
    the split comes back from the run's data record, checked by digest."""
    summary = json.loads((run_dir / "run.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    result = TrainResult(load_best_model(run_dir), Tokenizer.from_file(str(run_dir / TOKENIZER_FILE)), summary, history)
    return ship(result, split_from_record(summary["data"]), export, int8)


def evaluate_shipped(model_dir: Path) -> dict[str, Any]:
    """``python -m training evaluate``: a model directory on its own test split (rebuilt from its card)."""
    card = read_card(model_dir)
    return evaluate_card_model(model_dir, card, split_from_record(card.data))


def evaluate_card_model(
    model_dir: Path, card: ModelCard, split: Split, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The exported model, through the runtime, on the test split: every figure per source, slice and length."""
    predictor = Predictor.load(model_dir, provider="cpu", card=card)
    scored = score(predictor, split.test)
    evaluation = evaluate_examples(predictor, predictor.labels, split.test, card.calibration or None, scored)
    evaluation |= register_report(predictor, split.test, scored[0])
    write_report(model_dir / "evaluation", _report_header(card, predictor) | evaluation, history)
    return evaluation


def _report_header(card: ModelCard, predictor: Predictor) -> dict[str, Any]:
    return {
        "model": {"name": card.name, "version": card.version, "sha256": predictor.model_sha256},
        "data": f"test split ({SPLITS_FILE})",
    }
