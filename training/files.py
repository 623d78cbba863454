"""Users' own labelled files (CSV, TSV, JSON Lines, Parquet) as a ``Dataset``, refused with file, line and
reason."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from training.data import DataError, Dataset, Example, deduplicate


def load_labelled_file(path: str | Path, text_column: str = "text", label_column: str = "label") -> Dataset:
    """A user's CSV or JSONL file with a text column and a label column (any 2+ label values).

    Label values are kept as strings (a JSON ``1`` and a CSV ``"1"`` are the same class) and the label
    set is their sorted order; users' label names are used as they are.
    """
    path = Path(path)
    raw = [(text, label) for _, text, label in read_labelled_rows(path, text_column, label_column)]
    label_names = tuple(sorted({label for _, label in raw}))
    if len(label_names) < 2:
        raise DataError(
            f"{path}: column {label_column!r} has a single class ({label_names[0]!r}); at least 2 are needed"
        )
    index = {name: i for i, name in enumerate(label_names)}
    examples = [Example(text=text, label=index[label]) for text, label in raw]
    kept, dropped = deduplicate(examples)
    return Dataset(
        examples=kept,
        labels=label_names,
        source=str(path),
        dropped_duplicates=dropped,
        spec={"kind": "file", "path": str(path.resolve()), "text_column": text_column, "label_column": label_column},
    )


def read_labelled_rows(path: Path, text_column: str, label_column: str) -> list[tuple[int, str, str]]:
    """Every row's (line, text, label), labels as stripped strings; refuses a missing or empty file, a
    missing column and an empty text or label, naming the file and line (for Parquet: the 1-based row)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows = list(_read_jsonl(path, text_column, label_column))
    elif suffix in {".csv", ".tsv"}:
        rows = list(_read_csv(path, text_column, label_column, delimiter="\t" if suffix == ".tsv" else ","))
    elif suffix == ".parquet":
        rows = list(_read_parquet(path, text_column, label_column))
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if not rows:
        raise DataError(f"{path}: the file has no data rows")
    return rows


def _read_parquet(path: Path, text_column: str, label_column: str) -> Iterator[tuple[int, str, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from exc
    missing = [c for c in (text_column, label_column) if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {table.column_names}")
    texts, labels = table.column(text_column).to_pylist(), table.column(label_column).to_pylist()
    for row, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        yield _checked(path, row, text, label, text_column, label_column)


def _read_csv(path: Path, text_column: str, label_column: str, delimiter: str) -> Iterator[tuple[int, str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            if reader.fieldnames is None:
                raise DataError(f"{path}: the file is empty (no header row)")
            missing = [c for c in (text_column, label_column) if c not in reader.fieldnames]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {reader.fieldnames}")
            for row in reader:
                # reader.line_num is the physical line the row ended on (header is line 1).
                yield _checked(
                    path, reader.line_num, row.get(text_column), row.get(label_column), text_column, label_column
                )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable CSV: {exc}") from exc


def _read_jsonl(path: Path, text_column: str, label_column: str) -> Iterator[tuple[int, str, str]]:
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
            yield _checked(path, line_number, record[text_column], record[label_column], text_column, label_column)


def _checked(
    path: Path, line: int, text: object, label: object, text_column: str, label_column: str
) -> tuple[int, str, str]:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}: line {line}: {text_column!r} must be a non-empty string")
    if label is None or isinstance(label, (dict, list)) or str(label).strip() == "":
        raise DataError(f"{path}: line {line}: {label_column!r} must be a non-empty scalar")
    return line, text, str(label).strip()
