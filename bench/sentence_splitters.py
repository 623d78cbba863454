"""Sentence splitters side by side (docs/documents.md): exact sentences on the hand-written cases of
``tests/cases/sentences.json``, and sentences per second on one core, on IMDB test reviews and on one
100,000-character document. Each splitter runs as published ("as is") and on each line of the text
("by line": a line break always ends a sentence, as in a bullet list without full stops).

    python -m bench.sentence_splitters
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Splitter = Callable[[str], list[str]]
CASES = [(c["text"], c["sentences"]) for c in json.loads(Path("tests/cases/sentences.json").read_text())["cases"]]


def splitters() -> dict[str, Splitter]:
    import blingfire
    import pysbd
    from sentencex import segment
    from syntok import segmenter

    pysbd_en = pysbd.Segmenter(language="en", clean=False)

    def syntok_split(text: str) -> list[str]:
        out = []
        for paragraph in segmenter.analyze(text):
            for sentence in paragraph:
                start = sentence[0].offset
                end = sentence[-1].offset + len(sentence[-1].value)
                out.append(text[start:end])
        return out

    from model_runtime.sentences import split_sentences

    def service(text: str) -> list[str]:
        return [text[a : a + n] for a, n in split_sentences(text)]

    return {
        "service (sentencex by line + rules)": service,
        "pysbd 0.3.4": lambda text: list(pysbd_en.segment(text)),
        "sentencex": lambda text: list(segment("en", text)),
        "blingfire": lambda text: blingfire.text_to_sentences(text).split("\n") if text.strip() else [],
        "syntok": syntok_split,
    }


def by_line(split: Splitter) -> Splitter:
    return lambda text: [s for line in text.split("\n") if line.strip() for s in split(line)]


def exact(split: Splitter) -> tuple[float, list[dict[str, Any]]]:
    misses = []
    for text, expected in CASES:
        got = [s.strip() for s in split(text) if s.strip()]
        if got != expected:
            misses.append({"text": text, "got": got})
    return 1 - len(misses) / len(CASES), misses


def speed(split: Splitter, documents: list[str]) -> float:
    started, sentences = time.perf_counter(), 0
    for document in documents:
        sentences += len(split(document))
    return sentences / (time.perf_counter() - started)


def main() -> None:
    from training.data import split_dataset
    from training.sources import load_sources

    reviews = [ex.text for ex in split_dataset(load_sources(("imdb",))).test[:500]]
    long_document = " ".join(reviews)[:100_000]
    results: dict[str, Any] = {}
    for name, split in splitters().items():
        variants = [("", split)] if name.startswith("service") else [("as is", split), ("by line", by_line(split))]
        for variant, f in variants:
            score, misses = exact(f)
            started = time.perf_counter()
            f(long_document)
            key = f"{name}, {variant}" if variant else name
            results[key] = {
                "exact": score,
                "misses": misses,
                "sentences_per_s_reviews": speed(f, reviews),
                "seconds_100k_document": time.perf_counter() - started,
            }
            row = results[key]
            print(
                f"{name:12s} {variant:8s} exact {score:.1%}  {row['sentences_per_s_reviews']:8.0f} sentences/s  "
                f"100k chars {row['seconds_100k_document']:.2f} s"
            )
    Path("bench/results/sentence-splitters.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
