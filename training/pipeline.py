"""The straight line from data to a shipped model directory:

    load data once -> split once -> train -> export + verify -> evaluate -> (int8 trial) -> write the card once

Each step takes what the one before produced; nothing is loaded or split twice, and the card is written
at the end only, when every figure in it has been measured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_runtime import ModelCard, Predictor, read_card, write_card
from model_runtime.contract import SPLITS_FILE
from training.card import build_card, render_readme
from training.data import Dataset, Split, split_dataset
from training.evaluate import evaluate_examples, write_report
from training.export import export_run
from training.quantize import try_int8
from training.sources import split_from_record
from training.train import TrainConfig, train

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
    split = split_dataset(dataset)
    train(dataset, run_dir, config, resume=resume, split=split)
    return ship(run_dir, split, export, int8)


def ship(run_dir: Path, split: Split, export: ExportSpec, int8: bool = False) -> ModelCard:
    """Export + verify, evaluate on the test split, optionally try int8, then write the card once."""
    run = json.loads((run_dir / "run.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    model_dir = export.model_dir
    report = export_run(
        run_dir,
        model_dir,
        split.validation,
        {"labels": json.dumps(run["labels"]), "name": export.name, "version": export.version},
    )
    card = build_card(run, history, report, model_dir, export.name, export.version, export.command)
    evaluation = evaluate_card_model(model_dir, card, split, history)
    if int8:
        card.quantization = {"int8": try_int8(model_dir, card, split.test, evaluation["overall"]["accuracy"])}
        if card.quantization["int8"]["kept"]:
            card = build_card(run, history, report, model_dir, export.name, export.version, export.command)
            evaluation = evaluate_card_model(model_dir, card, split, history)
    card.metrics = {
        "test": _card_metrics(evaluation),
        "measured_on": "model.onnx through onnxruntime (CPU) and tokenizer.json",
    }
    write_card(model_dir, card, render_readme(card))
    return card


def ship_existing_run(run_dir: Path, export: ExportSpec, int8: bool = False) -> ModelCard:
    """``python -m training export``: the split comes back from the run's data spec, checked by digest."""
    split = split_from_record(json.loads((run_dir / "run.json").read_text())["data"])
    return ship(run_dir, split, export, int8)


def evaluate_shipped(model_dir: Path) -> dict[str, Any]:
    """``python -m training evaluate``: a model directory on its own test split (rebuilt from its card)."""
    card = read_card(model_dir)
    return evaluate_card_model(model_dir, card, split_from_record(card.data))


def evaluate_card_model(
    model_dir: Path, card: ModelCard, split: Split, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The exported model, through the runtime, on the test split: every figure per source and length."""
    predictor = Predictor.load(model_dir, provider="cpu", card=card)
    evaluation = evaluate_examples(predictor, predictor.labels, split.test, card.calibration or None)
    write_report(
        model_dir / "evaluation",
        {
            "model": {"name": card.name, "version": card.version, "sha256": predictor.model_sha256},
            "data": f"test split ({SPLITS_FILE})",
            **evaluation,
        },
        history,
    )
    return evaluation


def _card_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What the card keeps of an evaluation: the overall figures at the top (as every card had them), per
    source and per length bucket beside them, without the per-bin calibration tables."""

    def trim(m: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in m.items() if k != "calibration"}
        if "before_temperature" in kept:
            kept["before_temperature"] = {k: v for k, v in kept["before_temperature"].items() if k != "calibration"}
        return kept

    return {
        **trim(evaluation["overall"]),
        "by_source": {k: trim(v) for k, v in evaluation.get("by_source", {}).items()},
        "by_length": evaluation["by_length"],
    }
