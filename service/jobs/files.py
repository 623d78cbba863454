"""A job's input file, read as rows: CSV (a header row names the columns), JSON Lines (one object per line)
or plain text (one document per line), gzip accepted; UTF-8, a leading byte-order mark dropped.

Every input row becomes one ``Row`` in input order, the bad ones with their own error (a line that is not
UTF-8, broken JSON, no text, an empty text), so that a job's results hold every row exactly once. What is
wrong with the file as a whole (an unknown format, a missing column, a header that is not CSV) is an
``UploadError`` naming it, raised by ``check`` before a job is made, from its header and first rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

FORMATS = ("csv", "jsonl", "text")
CHECKED_ROWS = 20  # rows read before a job is accepted
_BOM = b"\xef\xbb\xbf"


class UploadError(ValueError):
    """The file cannot make a job; ``field`` names what is wrong (a column, the format, the encoding)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True, slots=True)
class Row:
    index: int  # 0-based position among the file's rows
    line: int  # where it ends in the file (1-based)
    id: str | None  # the id column's value, when one is named
    text: str | None  # None when the row has an error
    error: str | None = None


@dataclass(frozen=True)
class Layout:
    format: str
    text_field: str
    id_field: str | None = None


def decompressed(data: bytes, limit: int) -> bytes:
    """A gzip upload decoded (at most ``limit`` bytes once decoded); anything else as it is."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise UploadError("file", f"is not valid gzip ({exc})") from None
    if len(out) > limit:
        raise UploadError("file", f"is larger than SENTIMENT_JOBS_MAX_UPLOAD_BYTES = {limit:,} bytes once decoded")
    return out


def guess_format(content_type: str | None, filename: str | None) -> str:
    """The format a file's name or media type says (CSV, JSON Lines, else plain text)."""
    name = (filename or "").lower().removesuffix(".gz")
    kind = (content_type or "").split(";")[0].strip().lower()
    if name.endswith(".csv") or kind in ("text/csv", "application/csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")) or kind in (
        "application/x-ndjson",
        "application/jsonl",
        "application/json",
    ):
        return "jsonl"
    return "text"


def _lines(data: bytes) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, problem) per line: a line that is not UTF-8 is decoded with replacement characters
    and its first bad byte named."""
    for number, raw in enumerate(io.BytesIO(data.removeprefix(_BOM)), 1):
        try:
            yield number, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            problem = f"not UTF-8: byte 0x{raw[exc.start]:02x} at line {number}, column {column}"
            yield number, raw.decode("utf-8", "replace"), problem


def rows(data: bytes, layout: Layout) -> Iterator[Row]:
    """Every row of the file, in order (module docstring)."""
    if layout.format == "csv":
        yield from _csv_rows(data, layout)
        return
    index = 0
    for number, line, problem in _lines(data):
        if not line.strip():
            continue
        if layout.format == "text":
            text = line.rstrip("\r\n")
            yield Row(index, number, None, None if problem else text, problem)
        else:
            yield _json_row(index, number, line, problem, layout)
        index += 1


def _json_row(index: int, number: int, line: str, problem: str | None, layout: Layout) -> Row:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Row(index, number, None, None, problem or f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return Row(index, number, None, None, problem or "not a JSON object")
    identifier = record.get(layout.id_field) if layout.id_field else None
    text = record.get(layout.text_field)
    if not isinstance(text, str):
        return Row(index, number, _id(identifier), None, problem or f"no string field {layout.text_field!r}")
    return Row(index, number, _id(identifier), None if problem else text, problem)


def _id(value: object) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def _csv_rows(data: bytes, layout: Layout) -> Iterator[Row]:
    problems: dict[int, str] = {}
    current = [0]

    def text_lines() -> Iterator[str]:
        for number, line, problem in _lines(data):
            current[0] = number
            if problem:
                problems[number] = problem
            yield line

    reader = csv.reader(text_lines())
    try:
        header = next(reader, None)
        if header is None:
            raise UploadError("file", "is empty: a CSV needs a header row naming its columns")
        position = {name: i for i, name in enumerate(header)}
        for field in (layout.text_field, layout.id_field):
            if field is not None and field not in position:
                raise UploadError(field, f"no such column (columns: {', '.join(header)})")
        first, index = reader.line_num + 1, 0
        for cells in reader:
            last = reader.line_num
            problem = next((problems[n] for n in range(first, last + 1) if n in problems), None)
            first = last + 1
            if not cells:
                continue
            identifier = (
                cells[position[layout.id_field]] if layout.id_field and position[layout.id_field] < len(cells) else None
            )
            if problem is None and len(cells) != len(header):
                problem = f"{len(cells)} cells where the header has {len(header)} columns"
            text = cells[position[layout.text_field]] if problem is None else None
            yield Row(index, last, identifier, text, problem)
            index += 1
    except csv.Error as exc:
        reason = str(exc)
        if "field limit" in reason:
            reason = f"a field is longer than the CSV reader's limit of {csv.field_size_limit():,} characters"
        raise UploadError("file", f"line {current[0]}: {reason}") from None


def check(data: bytes, layout: Layout) -> None:
    """UploadError unless the file's header and first CHECKED_ROWS rows can be read with ``layout`` (a bad row
    is the row's own error later, not the file's; a file of bad rows only is refused)."""
    if layout.format not in FORMATS:
        raise UploadError("format", f"must be one of {', '.join(FORMATS)}, not {layout.format!r}")
    first = [row for _, row in zip(range(CHECKED_ROWS), rows(data, layout), strict=False)]
    if not first:
        raise UploadError("file", "holds no rows")
    if all(row.error for row in first):
        raise UploadError("file", f"none of its first {len(first)} rows can be read: {first[0].error}")


def count(data: bytes, layout: Layout) -> int:
    return sum(1 for _ in rows(data, layout))
