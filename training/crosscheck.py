"""A check that sees the register shortcut: hand-written sentences that cross registers, and how well a
text's source can be told from a model's three probabilities.

``checks/cross_register.tsv`` (written for this purpose, never trained on) holds opinions said in the
registers whose training texts are all neutral (encyclopedia, news, dialogue), neutral sentences in the
registers whose training texts are all polar (reviews, products, drug reviews, posts), plain one-clause
opinions, their negations, complaints and praise without an opinion word, and contrasts. A model that
learned "clean edited prose is neutral" or "a tweet is negative" fails it while passing every test split.

``source_leak`` asks the other half of the question on the test splits: a small softmax regression is fit
to tell the source from the model's log-probabilities and, beside it, from the true labels alone; what the
probabilities tell beyond the labels is register the model carries into its answers.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model_runtime import Predictor
from training.data import Example
from training.evaluate import metrics, score
from training.wordlist import LIST_2011, load_word_list, rule_label

CHECK_FILE = Path(__file__).resolve().parent / "checks" / "cross_register.tsv"
Probabilities = Callable[[list[str]], npt.NDArray[np.float32]]  # texts -> (N, C) in the model's label order
RULE = (
    "AFINN-111 (2011): neutral without a word of the list, otherwise the sign of the sum of its words' values, "
    "a negator flipping the next three words (training.wordlist.rule_label)"
)


@dataclass(frozen=True)
class Case:
    text: str
    label: str
    register: str
    kind: str


def load_check(path: Path = CHECK_FILE) -> list[Case]:
    with path.open(encoding="utf-8", newline="") as f:
        return [Case(r["text"], r["label"], r["register"], r["kind"]) for r in csv.DictReader(f, delimiter="\t")]


def rule_probabilities(labels: tuple[str, ...]) -> Probabilities:
    """The AFINN-111 rule (training.wordlist.rule_label) as one-hot probabilities in ``labels``' order."""
    word_list = load_word_list(LIST_2011)

    def probabilities(texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), len(labels)), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, labels.index(rule_label(word_list, text))] = 1.0
        return out

    return probabilities


def run_check(probabilities: Probabilities, labels: tuple[str, ...], cases: list[Case] | None = None) -> dict[str, Any]:
    """Three-class figures on the whole check, then accuracy by kind and by register (and the polarity of
    the polar cases): what a card or a comparison table shows."""
    cases = cases if cases is not None else load_check()
    probs = probabilities([c.text for c in cases])
    if "neutral" not in labels:  # a two-label model answers the polar cases only
        keep = [i for i, c in enumerate(cases) if c.label != "neutral"]
        cases, probs = [cases[i] for i in keep], probs[keep]
    truth = np.array([labels.index(c.label) for c in cases])
    overall = metrics(labels, truth, probs)
    correct = probs.argmax(axis=1) == truth

    def accuracy_by(key: Callable[[Case], str]) -> dict[str, dict[str, float]]:
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(cases):
            groups.setdefault(key(c), []).append(i)
        return {g: {"accuracy": float(correct[rows].mean()), "texts": len(rows)} for g, rows in sorted(groups.items())}

    return {
        "texts": len(cases),
        "accuracy": overall["accuracy"],
        "macro_f1": overall["macro_f1"],
        "polarity_accuracy": overall.get("polarity_accuracy"),
        "per_class_f1": {k: v["f1"] for k, v in overall["per_class"].items()},
        "by_kind": accuracy_by(lambda c: c.kind),
        "by_register": accuracy_by(lambda c: f"{c.register}/{c.label}"),
        "wrong": [
            {"text": c.text, "label": c.label, "answered": labels[int(probs[i].argmax())]}
            for i, c in enumerate(cases)
            if not correct[i]
        ],
    }


def model_probabilities(predictor: Predictor) -> Probabilities:
    def probabilities(texts: list[str]) -> npt.NDArray[np.float32]:
        return score(predictor, [Example(text, 0) for text in texts])[0]

    return probabilities


def register_report(predictor: Predictor, examples: list[Example], probs: npt.NDArray[np.float32]) -> dict[str, Any]:
    """For a model with a neutral label: the word-list rule on every test source beside the model, the
    cross-register check for both, and how much of a text's source the model's answers carry
    (``source_leak``); nothing for other label sets."""
    labels = predictor.labels
    if not {"negative", "neutral", "positive"} <= set(labels):
        return {}
    truth = np.array([ex.label for ex in examples])
    rule = rule_probabilities(labels)([ex.text for ex in examples])
    by_source = {}
    for source in sorted({ex.source for ex in examples}):
        rows = np.array([ex.source == source for ex in examples])
        by_source[source] = {k: v for k, v in metrics(labels, truth[rows], rule[rows]).items() if k != "calibration"}
    return {
        "word_list_rule": {"rule": RULE, "by_source": by_source},
        "cross_register": {
            "model": run_check(model_probabilities(predictor), labels),
            "word_list_rule": run_check(rule_probabilities(labels), labels),
        },
        "source_leak": source_leak(probs, truth, [ex.source for ex in examples]),
    }


def source_leak(
    probs: npt.NDArray[np.float32], truth: npt.NDArray[np.int64], sources: list[str], folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """How well a text's source is told from the model's log-probabilities, against from its true label alone
    (balanced accuracy over sources, ``folds``-fold cross-validated softmax regression). ``excess`` near 0:
    the answers carry no more of the register than the labels themselves."""
    names = sorted(set(sources))
    y = np.array([names.index(s) for s in sources])
    from_probs = np.log(np.maximum(probs.astype(np.float64), 1e-6))
    from_labels = np.eye(probs.shape[1])[truth]
    by_probs = _cross_validated(from_probs, y, len(names), folds, seed)
    by_labels = _cross_validated(from_labels, y, len(names), folds, seed)
    return {
        "sources": names,
        "balanced_accuracy_from_probabilities": by_probs,
        "balanced_accuracy_from_labels": by_labels,
        "chance": 1 / len(names),
        "excess": by_probs - by_labels,
    }


def _cross_validated(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], classes: int, folds: int, seed: int
) -> float:
    order = np.random.default_rng(seed).permutation(len(y))
    predicted = np.empty_like(y)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        weights = _fit_softmax(x[train], y[train], classes)
        predicted[test] = (_design(x[test]) @ weights).argmax(axis=1)
    recalls = [float((predicted[y == c] == c).mean()) for c in range(classes) if (y == c).any()]
    return float(np.mean(recalls))


def _design(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Features with their squares and a constant: a quadratic boundary over three probabilities."""
    return np.hstack([x, x**2, np.ones((len(x), 1))])


def _fit_softmax(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], classes: int, steps: int = 500
) -> npt.NDArray[np.float64]:
    """Class-balanced softmax regression by full-batch gradient descent (small, deterministic)."""
    design = _design(x)
    design = design / np.maximum(np.abs(design).max(axis=0), 1e-9)
    scale = np.maximum(np.abs(_design(x)).max(axis=0), 1e-9)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    sample_weight = (1.0 / np.maximum(counts, 1))[y]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(classes)[y]
    weights = np.zeros((design.shape[1], classes))
    for _ in range(steps):
        logits = design @ weights
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        weights -= 2.0 * design.T @ ((p - onehot) * sample_weight[:, None])
    result: npt.NDArray[np.float64] = weights / scale[:, None]
    return result
