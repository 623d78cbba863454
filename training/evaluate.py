"""Evaluate an exported model through the serving code path (model_runtime: ONNX Runtime + tokenizer.json).

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
import numpy.typing as npt

from model_runtime import Predictor
from training.data import DataError, Dataset, Example

log = logging.getLogger(__name__)
ECE_BINS = 15
FloatArray = npt.NDArray[np.float32]


def metrics(labels: tuple[str, ...], truth: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Classification and calibration metrics for integer ``truth`` (N,) and probabilities (N, C).

    Macro-F1 averages over the labels the texts have (a source without neutral texts is not marked down
    for a neutral F1 of 0). With negative, neutral and positive labels, also ``polarity_accuracy`` (on the
    polar texts, P(positive) against P(negative)), ``polarity_ece`` (of that two-way choice) and
    ``answered_neutral`` (the share of texts answered neutral)."""
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
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(confusion[c].sum()),
        }
    confidence = probs.max(axis=1)
    correct = predicted == truth
    ece, bins = calibration_error(confidence, correct)
    eps = 1e-12
    present = [m["f1"] for m in per_class.values() if m["support"]]
    return {
        "examples": len(truth),
        "accuracy": float(correct.mean()),
        "mean_confidence_when_wrong": float(confidence[~correct].mean()) if (~correct).any() else None,
        "macro_f1": float(np.mean(present)) if present else 0.0,
        **polarity_metrics(labels, truth, probs),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "rows_true_columns_predicted": confusion.tolist()},
        "ece": float(ece),
        "ece_bins": ECE_BINS,
        "log_loss": float(-np.mean(np.log(probs[np.arange(len(truth)), truth] + eps))),
        "calibration": bins,
    }


def polarity_metrics(labels: tuple[str, ...], truth: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """For a three-class model: how often it answers neutral, and on the polar texts whether P(positive)
    or P(negative) is the larger (the binary question a polar label answers) and how calibrated that is."""
    if not {"negative", "neutral", "positive"} <= set(labels):
        return {}
    neg, neu, pos = (labels.index(name) for name in ("negative", "neutral", "positive"))
    out: dict[str, Any] = {"answered_neutral": float((probs.argmax(axis=1) == neu).mean()) if len(probs) else 0.0}
    polar = (truth == neg) | (truth == pos)
    if polar.any():
        p_pos = probs[polar, pos] / np.maximum(probs[polar, pos] + probs[polar, neg], 1e-12)
        said_pos, is_pos = p_pos > 0.5, truth[polar] == pos
        out["polarity_accuracy"] = float((said_pos == is_pos).mean())
        out["polarity_examples"] = int(polar.sum())
        out["polarity_ece"] = calibration_error(np.maximum(p_pos, 1 - p_pos), said_pos == is_pos)[0]
    return out


def calibration_error(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, list[dict[str, Any]]]:
    """ECE over ECE_BINS equal-width confidence bins, and the bins (reliability diagram)."""
    ece, bins = 0.0, []
    for lo, hi in itertools.pairwise(np.linspace(0.0, 1.0, ECE_BINS + 1)):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            accuracy, mean_confidence = float(correct[in_bin].mean()), float(confidence[in_bin].mean())
            ece += float(in_bin.mean()) * abs(accuracy - mean_confidence)
            bins.append(
                {
                    "low": float(lo),
                    "high": float(hi),
                    "count": int(in_bin.sum()),
                    "accuracy": accuracy,
                    "confidence": mean_confidence,
                }
            )
    return ece, bins


def ece_if_calibrated(probs: np.ndarray, draws: int = 400, seed: int = 0) -> dict[str, float]:
    """The ECE that a perfectly calibrated model with these confidences shows on this many texts: each
    draw takes every text's label from the model's own probabilities (so each confidence is exactly right
    on average) and measures ECE. A measured ECE within this range is what sampling alone gives; on a
    small test split the floor itself can be above a target."""
    rng = np.random.default_rng(seed)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    cumulative = probs.cumsum(axis=1)
    values = []
    for _ in range(draws):
        drawn = np.minimum((rng.random((len(probs), 1)) > cumulative).sum(axis=1), probs.shape[1] - 1)
        values.append(calibration_error(confidence, drawn == predicted)[0])
    low, median, high = np.quantile(values, [0.05, 0.5, 0.95])
    return {"median": float(median), "p05": float(low), "p95": float(high), "draws": draws}


LENGTH_BUCKETS = ((0, 20, "<=20"), (21, 100, "21-100"), (101, 400, "101-400"), (401, 10**9, ">400"))
# Slices of the test splits where small sequence models fail first (CheckList, Ribeiro et al. 2020): a text
# is in a slice when one of its words (under the model's own tokenizer rules) is one of these.
NEGATORS = """not n't no never nothing nobody none nor neither nowhere hardly barely scarcely without cannot
dont doesnt didnt isnt wasnt arent werent cant couldnt wont wouldnt shouldnt aint"""
CONTRASTS = "but though although however whereas yet nevertheless nonetheless despite"
SLICES = {"negation": frozenset(NEGATORS.split()), "contrast": frozenset(CONTRASTS.split())}


def score(predictor: Predictor, examples: list[Example], batch_size: int = 64) -> tuple[FloatArray, list[int]]:
    """Probabilities (N, C) in the model's label order, and the tokens each text was scored on."""
    probs = np.empty((len(examples), len(predictor.labels)), dtype=np.float32)
    tokens: list[int] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        predictions = predictor.predict([ex.text for ex in chunk])
        probs[start : start + len(chunk)] = [[p.probabilities[name] for name in predictor.labels] for p in predictions]
        tokens += [p.tokens for p in predictions]
    return probs, tokens


def temperatures(calibration: dict[str, Any], tokens: list[int]) -> npt.NDArray[np.float64]:
    """Each text's temperature, exp(scale + slope ln length), from the card's calibration section."""
    t = calibration.get("temperature", {})
    log_length = np.log(np.maximum(np.array(tokens, dtype=np.float64), 1.0))
    result: npt.NDArray[np.float64] = np.exp(t.get("log_scale", 0.0) + t.get("log_slope", 0.0) * log_length)
    return result


def uncalibrated(probs: FloatArray, temperature: npt.NDArray[np.float64]) -> FloatArray:
    """The probabilities before temperature scaling: softmax(T * log p) = softmax(T * logits / T), per row."""
    log_p = np.log(np.maximum(probs.astype(np.float64), 1e-45)) * temperature[:, None]
    log_p -= log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    result: FloatArray = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


def evaluate_examples(
    predictor: Predictor,
    labels: tuple[str, ...],
    examples: list[Example],
    calibration: dict[str, Any] | None = None,
    scored: tuple[FloatArray, list[int]] | None = None,
) -> dict[str, Any]:
    """Metrics overall, per source and per length bucket; with a temperature, calibration before and after
    (``scored``: the examples' probabilities and token counts, when already scored)."""
    started = time.perf_counter()
    probs, tokens = scored or score(predictor, examples)
    seconds = time.perf_counter() - started
    truth = np.array([ex.label for ex in examples])
    temperature = temperatures(calibration, tokens) if calibration else None
    report: dict[str, Any] = {"overall": metrics(labels, truth, probs), "seconds": round(seconds, 1)}
    sources = sorted({ex.source for ex in examples})
    if sources != [""]:
        report["by_source"] = {}
        for source in sources:
            rows = np.array([ex.source == source for ex in examples])
            entry = metrics(labels, truth[rows], probs[rows])
            entry["ece_if_calibrated"] = ece_if_calibrated(probs[rows])
            if temperature is not None:
                before = metrics(labels, truth[rows], uncalibrated(probs[rows], temperature[rows]))
                entry["before_temperature"] = {k: before[k] for k in ("ece", "log_loss", "calibration")}
            report["by_source"][source] = entry
    report["by_slice"] = _slices(predictor, labels, examples, truth, probs)
    report["by_length"] = {}
    token_counts = np.array(tokens)
    for low, high, name in LENGTH_BUCKETS:
        rows = (token_counts >= low) & (token_counts <= high)
        if rows.any():
            m = metrics(labels, truth[rows], probs[rows])
            report["by_length"][name] = {k: m[k] for k in ("examples", "accuracy", "macro_f1", "ece", "log_loss")}
    return report


def slice_members(predictor: Predictor, examples: list[Example]) -> dict[str, npt.NDArray[np.bool_]]:
    """For each slice, which examples are in it (a word of the text is one of the slice's words)."""
    rules = predictor.tokenizer
    assert rules.normalizer is not None and rules.pre_tokenizer is not None
    words = [
        {w for w, _ in rules.pre_tokenizer.pre_tokenize_str(rules.normalizer.normalize_str(ex.text))} for ex in examples
    ]
    return {name: np.array([bool(w & cues) for w in words], dtype=bool) for name, cues in SLICES.items()}


def _slices(
    predictor: Predictor, labels: tuple[str, ...], examples: list[Example], truth: np.ndarray, probs: FloatArray
) -> dict[str, dict[str, Any]]:
    """Accuracy, ECE and confidence when wrong on each slice, over all texts and per source."""
    members = slice_members(predictor, examples)
    sources = np.array([ex.source for ex in examples])
    out: dict[str, dict[str, Any]] = {}
    for name, rows in members.items():
        out[name] = {}
        for source in ["all", *sorted(set(sources.tolist()) - {""})]:
            keep = rows & (sources == source) if source != "all" else rows
            if keep.any():
                m = metrics(labels, truth[keep], probs[keep])
                out[name][source] = {k: m[k] for k in ("examples", "accuracy", "ece", "mean_confidence_when_wrong")}
    return out


def evaluate_dataset(model_dir: Path, dataset: Dataset, output: Path | None = None) -> dict[str, Any]:
    """``python -m training evaluate --data FILE``: a shipped model on someone's labelled file."""
    predictor = Predictor.load(model_dir, provider="cpu")
    unknown = set(dataset.labels) - set(predictor.labels)
    if unknown:
        raise DataError(f"{dataset.source}: labels {sorted(unknown)} are not among the model's {predictor.labels}")
    index = {name: predictor.labels.index(name) for name in dataset.labels}
    examples = [Example(ex.text, index[dataset.labels[ex.label]]) for ex in dataset.examples]
    report = evaluate_examples(predictor, predictor.labels, examples)
    out = output or model_dir / "evaluation"
    write_report(
        out,
        {
            "model": {"name": predictor.name, "version": predictor.version, "sha256": predictor.model_sha256},
            "data": dataset.source,
            **report,
        },
    )
    return report


def write_report(out: Path, report: dict[str, Any], history: list[dict[str, Any]] | None = None) -> None:
    """evaluation.json and the plots (confusion matrix, reliability diagram, learning curves)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    plot_confusion(report["overall"], out / "confusion_matrix.png")
    plot_reliability(report, out / "calibration.png")
    if history:
        plot_learning_curves(history, out / "learning_curves.png")
    log.info(
        "accuracy %.4f, macro-F1 %.4f, ECE %.4f on %d texts",
        report["overall"]["accuracy"],
        report["overall"]["macro_f1"],
        report["overall"]["ece"],
        report["overall"]["examples"],
    )


def plot_confusion(result: dict[str, Any], path: Path) -> None:
    labels = result["confusion_matrix"]["labels"]
    matrix = np.array(result["confusion_matrix"]["rows_true_columns_predicted"])
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(labels), 3.5 + 0.4 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.2%} on {result['examples']} texts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(report: dict[str, Any], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, per source (after and, dotted, before
    temperature scaling), or overall for a single-source set."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    curves = report.get("by_source") or {"all": report["overall"]}
    for (name, m), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False):
        bins = m["calibration"]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "o-",
            color=colour,
            label=f"{name} (ECE {m['ece']:.3f})",
        )
        if "before_temperature" in m:
            bins = m["before_temperature"]["calibration"]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                ":",
                color=colour,
                label=f"{name} before T (ECE {m['before_temperature']['ece']:.3f})",
            )
    ax.set_xlabel("confidence (probability of the predicted label)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability (15 bins)")
    ax.legend(fontsize=7)
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
