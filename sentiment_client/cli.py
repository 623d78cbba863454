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
A bad row (no text, an empty text, broken JSON, a text the server refuses) is reported on stderr with its
line number; ``--on-error skip`` (the default) goes on with the rest, ``--on-error fail`` stops there
(exit status 1) after writing the rows before it. Blank lines in plain text are ignored.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def read_rows(stream: IO[str], fmt: str, field: str) -> Iterator[Row]:
    if fmt == "csv":
        reader = csv.DictReader(stream)
        if reader.fieldnames is not None and field not in reader.fieldnames:
            raise SystemExit(
                f"error: the CSV has no column {field!r} (columns: {', '.join(reader.fieldnames)}); "
                "choose one with --text-field"
            )
        for record in reader:
            extra = record.pop(None, None)  # cells beyond the header come under the key None
            text = record.get(field)
            if extra:
                yield Row(reader.line_num, record, None, f"{len(extra)} more cells than the header has columns")
                continue
            yield Row(reader.line_num, record, text, None if text is not None else f"no value in column {field!r}")
    elif fmt == "jsonl":
        for line, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Row(line, {}, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                yield Row(line, {}, None, f"not a JSON object with a string field {field!r}")
                continue
            yield Row(line, record, record[field])
    else:
        for line, raw in enumerate(stream, 1):
            text = raw.rstrip("\r\n")
            if text.strip():
                yield Row(line, {"text": text}, text)


def checked(row: Row) -> Row:
    if row.problem is None and (row.text is None or not row.text.strip()):
        row.problem = "the text is empty"
    return row


def probability_columns(probabilities: dict[str, float]) -> dict[str, float]:
    return {f"p_{label}": round(p, 6) for label, p in probabilities.items()}


def records(row: Row, result: Prediction | Document) -> list[dict[str, Any]]:
    """What one scored input row becomes: itself with its prediction, or one record per sentence."""
    if isinstance(result, Prediction):
        language = result.language.code if result.language and result.language.code else ""
        columns = {"label": result.label, "score": round(result.score, 6), **probability_columns(result.probabilities)}
        return [{**row.record, **columns, "language": language}]
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
        }
        for i, s in enumerate(result.sentences)
    ]


class Writer:
    def __init__(self, stream: IO[str], fmt: str) -> None:
        self.stream, self.fmt = stream, fmt
        self.csv: csv.DictWriter[str] | None = None

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
    the rows the server refuses; a document the server could not read is that row's failure."""
    good = [r for r in rows if r.problem is None]
    results: dict[int, Result | str] = {id(r): r.problem for r in rows if r.problem is not None}
    try:
        for row, result in zip(good, score([r.text or "" for r in good]), strict=True):
            results[id(row)] = result.error.message if isinstance(result, Document) and result.error else result
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
        return score_file(args, client.analyze, client.close)
    return score_file(args, client.predict, client.close)


def score_file(args: argparse.Namespace, score: Scorer[Result], close: Callable[[], None]) -> int:
    """Stream ``args.input`` through ``score`` in chunks into ``args.output``; the exit status."""
    fmt = args.format if args.format != "auto" else guess_format(args.input)
    out_fmt = "jsonl" if fmt == "jsonl" else "csv"
    total = None if args.input == "-" else count_lines(Path(args.input)) - (1 if fmt == "csv" else 0)
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", newline="")  # noqa: SIM115
    sink = sys.stdout if not args.output else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
    writer, scored, skipped = Writer(sink, out_fmt), 0, 0
    progress = tqdm(total=total, unit=" rows", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True)
    try:
        chunk: list[Row] = []
        for row in read_rows(source, fmt, args.text_field):
            chunk.append(checked(row))
            if len(chunk) >= args.batch_size:
                scored, skipped = flush(chunk, score, writer, args.on_error, scored, skipped, progress)
                chunk = []
        scored, skipped = flush(chunk, score, writer, args.on_error, scored, skipped, progress)
    except (BadRowError, SentimentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"error: the input is not UTF-8 ({exc.reason} at byte {exc.start} of a block)", file=sys.stderr)
        return 1
    finally:
        progress.close()
        sink.flush()
        if sink is not sys.stdout:
            sink.close()
        if source is not sys.stdin:
            source.close()
        close()
    print(f"{scored} rows scored, {skipped} skipped", file=sys.stderr)
    return 0


def flush(
    chunk: list[Row],
    score: Scorer[Result],
    writer: Writer,
    on_error: str,
    scored: int,
    skipped: int,
    progress: tqdm[Any],
) -> tuple[int, int]:
    if not chunk:
        return scored, skipped
    for row, result in score_chunk(chunk, score):
        if isinstance(result, str):
            if on_error == "fail":
                writer.stream.flush()
                raise BadRowError(f"line {row.line}: {result}")
            print(f"line {row.line}: skipped: {result}", file=sys.stderr)
            skipped += 1
        else:
            writer.write(row, result)
            scored += 1
    writer.stream.flush()
    progress.update(len(chunk))
    return scored, skipped
