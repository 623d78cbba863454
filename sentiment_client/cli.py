"""Score a file of texts through a running service: CSV, JSON Lines or plain text (one text per line), from
a path or stdin.

    python -m sentiment_client reviews.csv -o scored.csv --server http://localhost:8000
    cat reviews.txt | python -m sentiment_client - --format text > scored.csv

(In process, without a server, or on Ray: ``python -m sentiment_bulk``, which needs the model runtime.)

The output holds every input row (all its columns or fields) plus ``label``, ``score``, one ``p_<label>``
column per label of the model and ``language``; plain text becomes CSV with the column text and those.
With ``--sentences`` each text is a document read sentence by sentence (the service's /analyze): one output
row per sentence with ``document`` (the input's line number), ``sentence``, ``offset`` and ``length`` (code
points), ``text``, ``label``, the ``p_<label>`` columns and the document's ``document_label`` (``mixed``
included). Rows stream through in chunks of ``--batch-size``, so a
file larger than memory works; a progress bar on stderr shows the rate and, for files, the time left.
A bad row (no text, an empty text, broken JSON, a byte that is not UTF-8, a text the server refuses) is
reported on stderr with its line (and column, for a bad byte); ``--on-error skip`` (the default) leaves out
exactly those rows and goes on, ``--on-error fail`` stops there (exit status 1). With ``--sentences``, a
document the service could not score (empty, too long, too many sentences, a language it refuses) is a
result: one row with its ``error``, counted as such. A CSV may start with a byte-order mark. The output is
written to a temporary file beside it and renamed once complete: a run that fails leaves no output file,
and never a half-written one. Blank lines in plain text are ignored.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from tqdm import tqdm

from sentiment_client import Document, InvalidInputError, Prediction, SentimentClient, SentimentError

Result = TypeVar("Result", Prediction, Document)
Scorer = Callable[[list[str]], list[Result]]


@dataclass
class Row:
    line: int
    record: dict[str, Any]  # what is written back, plus label and score
    text: str | None
    problem: str | None = None


class BadRowError(Exception):
    pass


class InputError(Exception):
    """The input cannot be read on (a CSV field over the reader's limit, a missing column)."""


class Lines:
    """The lines of a binary stream as text, counted from 1: UTF-8 (a leading byte-order mark dropped); a line
    that is not is decoded with replacement characters and its first bad byte kept, by line and column."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.number = raw, 0
        self.bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for data in self.raw:
            self.number += 1
            if self.number == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = len(data[: exc.start].decode("utf-8", "replace")) + 1
                self.bad[self.number] = (
                    f"not UTF-8: byte 0x{data[exc.start]:02x} at line {self.number}, column {column}"
                )
                yield data.decode("utf-8", "replace")

    def problem(self, first: int, last: int) -> str | None:
        """The first bad byte on lines ``first`` to ``last``, as a row's problem."""
        found = next((line for line in range(first, last + 1) if line in self.bad), None)
        return None if found is None else self.bad[found]


def read_rows(lines: Lines, fmt: str, field: str) -> Iterator[Row]:
    if fmt == "csv":
        yield from _csv_rows(lines, field)
        return
    for raw in lines:
        line, problem = lines.number, lines.problem(lines.number, lines.number)
        if fmt == "text":
            text = raw.rstrip("\r\n")
            if text.strip():
                yield Row(line, {"text": text}, None if problem else text, problem)
            continue
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Row(line, {}, None, problem or f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            yield Row(line, {}, None, problem or f"not a JSON object with a string field {field!r}")
            continue
        yield Row(line, record, None if problem else record[field], problem)


def _csv_rows(lines: Lines, field: str) -> Iterator[Row]:
    reader = csv.DictReader(lines)
    try:
        if reader.fieldnames is not None and field not in reader.fieldnames:
            raise InputError(
                f"the CSV has no column {field!r} (columns: {', '.join(reader.fieldnames)}); "
                "choose one with --text-field"
            )
        first = 2
        for record in reader:
            extra = record.pop(None, None)  # cells beyond the header come under the key None
            problem = lines.problem(first, reader.line_num)
            line, first = reader.line_num, reader.line_num + 1
            text = record.get(field)
            if problem or extra:
                yield Row(line, record, None, problem or f"{len(extra)} more cells than the header has columns")
                continue
            yield Row(line, record, text, None if text is not None else f"no value in column {field!r}")
    except csv.Error as exc:
        reason = str(exc)
        if "field limit" in reason:
            reason = f"a field is longer than the CSV reader's limit of {csv.field_size_limit():,} characters"
        raise InputError(f"line {lines.number}: {reason}") from None


def checked(row: Row) -> Row:
    if row.problem is None and (row.text is None or not row.text.strip()):
        row.problem = "the text is empty"
    return row


def probability_columns(probabilities: dict[str, float]) -> dict[str, float]:
    return {f"p_{label}": round(p, 6) for label, p in probabilities.items()}


SENTENCE_COLUMNS = ("document", "sentence", "offset", "length", "text", "label")


def records(row: Row, result: Prediction | Document) -> list[dict[str, Any]]:
    """What one scored input row becomes: itself with its prediction, or one record per sentence (one record
    with its ``error`` for a document the service could not score)."""
    if isinstance(result, Prediction):
        language = result.language.code if result.language and result.language.code else ""
        columns = {"label": result.label, "score": round(result.score, 6), **probability_columns(result.probabilities)}
        return [{**row.record, **columns, "language": language}]
    if result.error is not None:
        return [{"document": row.line, "error": f"{result.error.code}: {result.error.message}"}]
    return [
        {
            "document": row.line,
            "sentence": i,
            "offset": s.offset,
            "length": s.length,
            "text": s.text,
            "label": s.label,
            **probability_columns(s.probabilities),
            "document_label": result.label,
            "error": "",
        }
        for i, s in enumerate(result.sentences)
    ]


class Writer:
    """Records to CSV (the header from the first record, or for sentences from the model's labels, so that a
    document's error row and the sentence rows share one header) or JSON Lines."""

    def __init__(self, stream: IO[str], fmt: str, sentence_labels: list[str] | None = None) -> None:
        self.stream, self.fmt = stream, fmt
        self.csv: csv.DictWriter[str] | None = None
        if sentence_labels is not None and fmt == "csv":
            columns = [*SENTENCE_COLUMNS, *(f"p_{label}" for label in sentence_labels), "document_label", "error"]
            self.csv = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: Row, result: Prediction | Document) -> None:
        for record in records(row, result):
            self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        if self.csv is None:
            self.csv = csv.DictWriter(self.stream, fieldnames=list(record), extrasaction="ignore")
            self.csv.writeheader()
        self.csv.writerow(record)


def score_chunk(rows: list[Row], score: Scorer[Result]) -> list[tuple[Row, Result | str]]:
    """Results (or the reason a row failed) for a chunk; a refused chunk is retried row by row to find
    the rows the server refuses (a document the server could not score is a result, with its error)."""
    good = [r for r in rows if r.problem is None]
    results: dict[int, Result | str] = {id(r): r.problem for r in rows if r.problem is not None}
    try:
        for row, result in zip(good, score([r.text or "" for r in good]), strict=True):
            results[id(row)] = result
    except InvalidInputError:
        for row in good:
            try:
                results[id(row)] = score([row.text or ""])[0]
            except InvalidInputError as exc:  # the details speak of texts[0]; the row is the text itself
                results[id(row)] = "; ".join(str(d.get("message")) for d in exc.details) or exc.message
    return [(r, results[id(r)]) for r in rows]


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def guess_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "text")


def add_file_options(parser: argparse.ArgumentParser) -> None:
    """The options of reading, batching and writing a file, shared with ``python -m sentiment_bulk``."""
    parser.add_argument("input", help="a CSV, JSONL or text file, or - for stdin")
    parser.add_argument("-o", "--output", help="where to write (default: stdout)")
    parser.add_argument(
        "--format",
        choices=["auto", "csv", "jsonl", "text"],
        default="auto",
        help="input format (auto: from the file name; stdin is text unless given)",
    )
    parser.add_argument("--text-field", default="text", help="CSV column or JSON field that holds the text")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per request or model call")
    parser.add_argument("--on-error", choices=["skip", "fail"], default="skip")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--sentences", action="store_true", help="read each text as a document: one output row per sentence"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentiment_client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_file_options(parser)
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="the service's URL (default: %(default)s)")
    parser.add_argument("--api-key", help="when the service needs one")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    if args.input != "-" and not Path(args.input).is_file():
        parser.error(f"no such file: {args.input}")
    client = SentimentClient(args.server, api_key=args.api_key, timeout=args.timeout)
    if args.sentences:
        return score_file(args, client.analyze, client.close, client.labels)
    return score_file(args, client.predict, client.close)


@dataclass
class Tally:
    scored: int = 0
    with_error: int = 0  # documents the service could not score, written with their error
    skipped: list[int] = field(default_factory=list)  # the lines of the rows left out

    def summary(self) -> str:
        lines = ", ".join(map(str, self.skipped[:20])) + (", ..." if len(self.skipped) > 20 else "")
        skipped = f"{len(self.skipped)} skipped" + (f" (lines {lines})" if self.skipped else "")
        errors = f", {self.with_error} with their error" if self.with_error else ""
        return f"{self.scored} rows scored{errors}, {skipped}"


def score_file(
    args: argparse.Namespace,
    score: Scorer[Result],
    close: Callable[[], None],
    labels: Callable[[], list[str]] | None = None,
) -> int:
    """Stream ``args.input`` through ``score`` in chunks into ``args.output`` (a temporary file beside it,
    renamed once every row is through; removed on failure); the exit status. ``labels``: the model's labels,
    for the header of sentence rows."""
    fmt = args.format if args.format != "auto" else guess_format(args.input)
    out_fmt = "jsonl" if fmt == "jsonl" else "csv"
    total = None if args.input == "-" else count_lines(Path(args.input)) - (1 if fmt == "csv" else 0)
    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    target = Path(args.output) if args.output else None
    staging = None if target is None else target.with_name(f".{target.name}.{os.getpid()}.partial")
    sink = sys.stdout if staging is None else open(staging, "w", encoding="utf-8", newline="")  # noqa: SIM115
    tally = Tally()
    progress = tqdm(total=total, unit=" rows", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True)
    status = 1
    try:
        writer = Writer(sink, out_fmt, labels() if labels and args.sentences else None)
        chunk: list[Row] = []
        for row in read_rows(Lines(source), fmt, args.text_field):
            chunk.append(checked(row))
            if len(chunk) >= args.batch_size:
                flush(chunk, score, writer, args.on_error, tally, progress)
                chunk = []
        flush(chunk, score, writer, args.on_error, tally, progress)
        status = 0
    except (BadRowError, InputError, SentimentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        progress.close()
        sink.flush()
        if sink is not sys.stdout:
            sink.close()
        if source is not sys.stdin.buffer:
            source.close()
        close()
        if staging is not None and target is not None:
            if status == 0:
                os.replace(staging, target)
            else:
                staging.unlink(missing_ok=True)
    if status == 0:
        print(tally.summary(), file=sys.stderr)
    return status


def flush(
    chunk: list[Row], score: Scorer[Result], writer: Writer, on_error: str, tally: Tally, progress: tqdm[Any]
) -> None:
    if not chunk:
        return
    for row, result in score_chunk(chunk, score):
        if isinstance(result, str):
            if on_error == "fail":
                raise BadRowError(f"line {row.line}: {result}")
            print(f"line {row.line}: skipped: {result}", file=sys.stderr)
            tally.skipped.append(row.line)
            continue
        writer.write(row, result)
        if isinstance(result, Document) and result.error is not None:
            tally.with_error += 1
        else:
            tally.scored += 1
    writer.stream.flush()
    progress.update(len(chunk))
