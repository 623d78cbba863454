"""Evaluate an exported model directory through the serving code path (ONNX Runtime + tokenizer.json).

Writes ``evaluation.json`` (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix,
expected calibration error) and PNG plots (confusion matrix, reliability diagram, learning curves when
the training history is known) to ``MODEL_DIR/evaluation/`` or ``--output``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from service.predictor import CARD_FILE, Predictor
from training.data import DataError, Dataset, Example, digest_of_hashes, load_from_spec, split_dataset

log = logging.getLogger(__name__)
ECE_BINS = 15


def metrics(labels: tuple[str, ...], truth: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Classification and calibration metrics for integer ``truth`` (N,) and probabilities (N, C)."""
    n_classes = len(labels)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)  # rows: true label, columns: predicted
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for c, name in enumerate(labels):
        tp = confusion[c, c]
        precision = tp / confusion[:, c].sum() if confusion[:, c].sum() else 0.0
        recall = tp / confusion[c].sum() if confusion[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[c].sum())}
    confidence = probs.max(axis=1)
    correct = predicted == truth
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    bins = []
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += in_bin.mean() * gap
            bins.append({"low": float(lo), "high": float(hi), "count": int(in_bin.sum()),
                         "accuracy": float(correct[in_bin].mean()), "confidence": float(confidence[in_bin].mean())})
    eps = 1e-12
    return {
        "examples": len(truth),
        "accuracy": float(correct.mean()),
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "rows_true_columns_predicted": confusion.tolist()},
        "ece": float(ece),
        "ece_bins": ECE_BINS,
        "log_loss": float(-np.mean(np.log(probs[np.arange(len(truth)), truth] + eps))),
        "calibration": bins,
    }


def score(predictor: Predictor, examples: list[Example], batch_size: int = 64) -> np.ndarray:
    probs = np.empty((len(examples), len(predictor.labels)), dtype=np.float32)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        predictions = predictor.predict([ex.text for ex in chunk])
        probs[start:start + len(chunk)] = [[p.probabilities[name] for name in predictor.labels]
                                           for p in predictions]
    return probs


def test_split_of(card: dict[str, Any]) -> list[Example]:
    """Rebuild the card's test split and check it is the one the model was trained beside."""
    data = card["data"]
    split = split_dataset(load_from_spec(data["spec"]), seed=data["split_seed"])
    if digest_of_hashes(split.hashes["test"]) != data["split_sha256"]["test"]:
        raise DataError("the rebuilt test split does not match the model card's hash: the corpus changed")
    return split.test


def evaluate_model_dir(model_dir: Path, run_dir: Path | None = None, dataset: Dataset | None = None,
                       output: Path | None = None, update_card: bool = False) -> dict[str, Any]:
    predictor = Predictor.load(model_dir, provider="cpu")
    card = predictor.card
    if dataset is None:
        examples, source = test_split_of(card), "test split"
    else:
        unknown = set(dataset.labels) - set(predictor.labels)
        if unknown:
            raise DataError(f"{dataset.source}: labels {sorted(unknown)} are not among the model's {predictor.labels}")
        index = {name: predictor.labels.index(name) for name in dataset.labels}
        examples = [Example(ex.text, index[dataset.labels[ex.label]]) for ex in dataset.examples]
        source = dataset.source
    started = time.perf_counter()
    probs = score(predictor, examples)
    seconds = time.perf_counter() - started
    truth = np.array([ex.label for ex in examples])
    result = metrics(predictor.labels, truth, probs)
    report = {"model": {"name": predictor.name, "version": predictor.version, "sha256": predictor.model_sha256},
              "data": source, "metrics": result, "seconds": round(seconds, 1)}
    out = output or model_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    plot_confusion(result, out / "confusion_matrix.png")
    plot_reliability(result, out / "calibration.png")
    history_path = (run_dir / "history.json") if run_dir else None
    if history_path and history_path.exists():
        plot_learning_curves(json.loads(history_path.read_text()), out / "learning_curves.png")
    log.info("%s: accuracy %.4f, macro-F1 %.4f, ECE %.4f on %d texts", source, result["accuracy"],
             result["macro_f1"], result["ece"], len(examples))
    if update_card:
        _write_metrics_to_card(model_dir, card, result)
    return report


def _write_metrics_to_card(model_dir: Path, card: dict[str, Any], result: dict[str, Any]) -> None:
    from training.export import render_card_readme

    card["metrics"] = {"test": {k: result[k] for k in ("examples", "accuracy", "macro_f1", "ece", "log_loss",
                                                         "per_class", "confusion_matrix")},
                       "measured_on": "model.onnx through onnxruntime (CPU) and tokenizer.json"}
    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (model_dir / "README.md").write_text(render_card_readme(card))


def plot_confusion(result: dict[str, Any], path: Path) -> None:
    labels = result["confusion_matrix"]["labels"]
    matrix = np.array(result["confusion_matrix"]["rows_true_columns_predicted"])
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(labels), 3.5 + 0.4 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.2%} on {result['examples']} texts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    bins = result["calibration"]
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="model")
    ax.set_xlabel("confidence (probability of the predicted label)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability, ECE {result['ece']:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.legend()
    acc_ax.plot(epochs, [h["val_accuracy"] for h in history], "o-", color="tab:green")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
