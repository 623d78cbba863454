"""The /analyze document verdict, measured (docs/documents.md): on the hand-written documents of
``tests/cases/documents.json`` (exact verdicts, each mixedness threshold), and on the IMDB test reviews through
a running server's /analyze beside /predict (document polarity: P(positive) against P(negative) of the
verdict's probabilities; the share called mixed).

    python -m bench.documents --base http://127.0.0.1:8000 [--reviews 2740]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx

from model_runtime import Prediction, document_verdict
from training.data import split_dataset
from training.sources import load_sources

THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)


def sentences_of(answer: dict[str, Any]) -> list[Prediction]:
    return [
        Prediction(s["label"], s["probabilities"][s["label"]], s["probabilities"], max(1, len(s["text"]) // 5), False)
        for s in answer["sentences"]
    ]


def whole(http: httpx.Client, texts: list[str]) -> list[Prediction]:
    """Each text scored whole by /predict, as /analyze scores each document beside its sentences."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(texts), 32):
        out += http.post("/predict", json={"texts": texts[start : start + 32]}, timeout=120).json()["predictions"]
    return [Prediction(p["label"], p["score"], p["probabilities"], p["tokens"], p["truncated"]) for p in out]


def analyze(http: httpx.Client, texts: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(texts), 16):
        out += http.post("/analyze", json={"documents": texts[start : start + 16]}, timeout=120).json()["documents"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--reviews", type=int, default=2740)
    parser.add_argument("--output", type=Path, default=Path("bench/results/documents.json"))
    args = parser.parse_args()
    cases = json.loads(Path("tests/cases/documents.json").read_text())["documents"]
    http = httpx.Client(base_url=args.base, timeout=120)
    labels = tuple(http.get("/model").json()["labels"])
    results: dict[str, Any] = {"labels": labels, "hand_written": {}, "imdb": {}}
    answers = analyze(http, [c["text"] for c in cases])
    wholes = whole(http, [c["text"] for c in cases])
    for threshold in THRESHOLDS:
        verdicts = [
            document_verdict(sentences_of(a), labels, threshold, w)[0] for a, w in zip(answers, wholes, strict=True)
        ]
        right = [v == c["verdict"] for v, c in zip(verdicts, cases, strict=True)]
        by_kind: dict[str, list[bool]] = {}
        for ok, c in zip(right, cases, strict=True):
            by_kind.setdefault(c["verdict"], []).append(ok)
        results["hand_written"][threshold] = {
            "exact": sum(right) / len(right),
            "by_verdict": {k: sum(v) / len(v) for k, v in by_kind.items()},
            "wrong": [(c["text"][:60], v) for ok, v, c in zip(right, verdicts, cases, strict=True) if not ok],
        }
        print(threshold, json.dumps(results["hand_written"][threshold]["by_verdict"]))
    imdb = split_dataset(load_sources(("imdb",)))
    test, names = imdb.test[: args.reviews], imdb.labels
    truth = [names[ex.label] for ex in test]
    reviews = analyze(http, [ex.text for ex in test])
    predicted = whole(http, [ex.text for ex in test])

    def leans(p: dict[str, float]) -> str:
        return "positive" if p["positive"] >= p["negative"] else "negative"

    results["imdb"]["reviews"] = len(test)
    results["imdb"]["predict_polarity_accuracy"] = sum(
        leans(p.probabilities) == t for p, t in zip(predicted, truth, strict=True)
    ) / len(test)
    results["imdb"]["predict_answered_neutral"] = sum(p.label == "neutral" for p in predicted) / len(test)
    results["imdb"]["analyze_polarity_accuracy"] = sum(
        leans(r["probabilities"]) == t for r, t in zip(reviews, truth, strict=True)
    ) / len(test)
    for threshold in THRESHOLDS:
        verdicts = [
            document_verdict(sentences_of(r), labels, threshold, w)[0] for r, w in zip(reviews, predicted, strict=True)
        ]
        results["imdb"][f"mixed_at_{threshold}"] = sum(v == "mixed" for v in verdicts) / len(test)
        results["imdb"][f"neutral_at_{threshold}"] = sum(v == "neutral" for v in verdicts) / len(test)
    print(json.dumps(results["imdb"], indent=1))
    args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
