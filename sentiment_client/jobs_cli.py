"""``python -m sentiment_client jobs ...``: files too big for one request, as jobs on the service.

python -m sentiment_client jobs submit reviews.csv --text-column review --wait -o scored.csv
python -m sentiment_client jobs status ID
python -m sentiment_client jobs results ID [-o scored.jsonl] [--format jsonl]
python -m sentiment_client jobs cancel ID
python -m sentiment_client jobs list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sentiment_client.errors import SentimentError
from sentiment_client.jobs import Job
from sentiment_client.sync import SentimentClient


def _status_line(job: Job) -> str:
    rows, info = job.info["rows"], job.info
    line = f"{job.id} {job.state}: {rows['done'] + rows['failed']:,} of {rows['total']:,} rows"
    if rows["failed"]:
        line += f" ({rows['failed']:,} failed)"
    if info.get("seconds_left") is not None:
        line += f", about {info['seconds_left']:.0f} s left"
    return line + (f"; {info['error']}" if info.get("error") else "")


def _write_results(job: Job, output: str | None, fmt: str) -> None:
    if output:
        job.download(output, fmt)
        print(f"results of {job.id} -> {output}", file=sys.stderr)
        return
    source = job.client.stream_lines(f"/jobs/{job.id}/results", {"format": fmt})
    for line in source:
        sys.stdout.write(line + "\n")


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    return "jsonl" if args.output and Path(args.output).suffix.lower() in (".jsonl", ".ndjson") else "csv"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sentiment_client jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--server", default="http://127.0.0.1:8000", help="the service's URL (default: %(default)s)")
    p.add_argument("--api-key", help="when the service needs one; a key sees only its own jobs")
    sub = p.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="upload a file as a job")
    submit.add_argument("file", type=Path, help="CSV, JSON Lines or text (one document per line); .gz too")
    submit.add_argument("--text-column", default="text", help="the column or field holding the text")
    submit.add_argument("--id-column", default=None, help="a column or field to carry into the results")
    submit.add_argument("--task", choices=["predict", "analyze"], default="predict")
    submit.add_argument("--wait", action="store_true", help="wait for it (a progress bar), then write its results")
    for name in ("status", "results", "cancel"):
        command = sub.add_parser(name, help=f"a job's {name}" if name != "cancel" else "cancel a job, delete its files")
        command.add_argument("id")
    sub.add_parser("list", help="your jobs")
    for command in (submit, sub.choices["results"]):
        command.add_argument("-o", "--output", help="where to write the results (default: stdout)")
        command.add_argument("--format", choices=["csv", "jsonl"], help="default: from -o's suffix, else csv")
    return p


def run(args: argparse.Namespace, client: SentimentClient) -> int:
    if args.command == "submit":
        job = client.submit_job(args.file, args.text_column, args.id_column, args.task)
        print(f"job {job.id} submitted ({job.info['rows']['total']:,} rows)", file=sys.stderr)
        if args.wait:
            job.wait()
            _write_results(job, args.output, _format(args))
        else:
            print(job.id)
    elif args.command == "status":
        print(_status_line(client.job(args.id)))
    elif args.command == "results":
        _write_results(client.job(args.id), args.output, _format(args))
    elif args.command == "cancel":
        client.job(args.id).cancel()
        print(f"job {args.id} cancelled and its files deleted", file=sys.stderr)
    else:
        listing: list[dict[str, Any]] = [job.info for job in client.jobs()]
        print(json.dumps(listing, indent=1))
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    client = SentimentClient(args.server, api_key=args.api_key)
    try:
        return run(args, client)
    except SentimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
