"""The file-scoring CLIs: through a real server (python -m sentiment_client) and in process, with no server
(python -m sentiment_bulk); the same file handling in both."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT, launch, stop_server

pytestmark = pytest.mark.slow


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The server CLI with ``--server``, the in-process one (sentiment_bulk) with ``--model-dir``."""
    module = "sentiment_bulk" if "--model-dir" in args else "sentiment_client"
    return subprocess.run(
        [sys.executable, "-m", module, "--no-progress", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_csv_keeps_columns_and_skips_a_bad_row_by_line_number(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "reviews.csv"
    source.write_text(
        'id,text,stars\n1,"A wonderful, moving film.",5\n2,"   ",3\n'
        '3,"Multi-line\nreview: dull and long.",1\n4,Loved it,4\n5,Fine,3,surplus\n'
    )
    out = tmp_path / "scored.csv"
    done = cli(str(source), "-o", str(out), "--model-dir", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert "line 3: skipped: the text is empty" in done.stderr
    assert "line 7: skipped: 1 more cells than the header has columns" in done.stderr
    assert "3 rows scored, 2 skipped" in done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [r["id"] for r in rows] == ["1", "3", "4"]
    assert rows[1]["text"] == "Multi-line\nreview: dull and long." and rows[1]["stars"] == "1"
    assert all(r["label"] in ("negative", "neutral", "positive") and 1 / 3 <= float(r["score"]) <= 1 for r in rows)
    assert all(float(r["score"]) == float(r[f"p_{r['label']}"]) and r["language"] in ("en", "") for r in rows)


def test_on_error_fail_stops_at_the_bad_row_after_writing_those_before(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "reviews.jsonl"
    source.write_text(
        '{"text": "Great fun.", "id": 1}\n{"text": "Good.", "id": 2}\n{"text": broken\n{"text": "Never reached."}\n'
    )
    done = cli(str(source), "--model-dir", str(tiny_model_dir), "--on-error", "fail")
    assert done.returncode == 1
    assert "line 3: not valid JSON" in done.stderr
    written = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in written] == [1, 2] and all("label" in r and "score" in r for r in written)


def test_a_missing_file_or_server_is_one_line(tmp_path: Path) -> None:
    missing = cli(str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    source = tmp_path / "reviews.txt"
    source.write_text("Fine.\n")
    unreachable = cli(str(source), "--server", "http://127.0.0.1:9", "--timeout", "1")
    assert unreachable.returncode == 1 and unreachable.stderr.startswith("error: no answer from the server")


def test_jsonl_skip_reports_each_kind_of_bad_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "reviews.jsonl"
    source.write_text('{"text": "Great fun."}\n[1, 2]\n{"body": "no text field"}\n\n{"text": "Awful."}\n')
    done = cli(str(source), "--model-dir", str(tiny_model_dir))
    assert done.returncode == 0
    assert "line 2: skipped: not a JSON object with a string field 'text'" in done.stderr
    assert "line 3: skipped" in done.stderr
    assert [json.loads(line)["text"] for line in done.stdout.splitlines()] == ["Great fun.", "Awful."]


def test_stdin_text_streams_through_a_server(tiny_model_dir: Path) -> None:
    base, process = launch(tiny_model_dir)
    try:
        cmd = [sys.executable, "-m", "sentiment_client", "-", "--server", base, "--batch-size", "2", "--no-progress"]
        with subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        ) as streaming:
            assert streaming.stdin and streaming.stdout
            streaming.stdin.write("Loved every minute.\nHated it.\n")
            streaming.stdin.flush()
            # Output for the first chunk arrives while the input is still open: rows stream, nothing waits for EOF.
            header, first = streaming.stdout.readline(), streaming.stdout.readline()
            assert header.strip() == "text,label,score,p_negative,p_neutral,p_positive,language"
            assert first.startswith("Loved every minute.,")
            streaming.stdin.write("\nToo long and boring.\n")
            streaming.stdin.close()
            rest = streaming.stdout.read()
            assert streaming.wait(60) == 0
        rows = list(csv.reader(io.StringIO(header + first + rest)))
        assert [r[0] for r in rows[1:]] == ["Loved every minute.", "Hated it.", "Too long and boring."]
    finally:
        stop_server(process)


def test_a_text_the_server_refuses_is_isolated_and_skipped(tiny_model_dir: Path, tmp_path: Path) -> None:
    base, process = launch(tiny_model_dir, SENTIMENT_MAX_TEXT_CHARS="50")
    try:
        source = tmp_path / "reviews.txt"
        source.write_text("Short and sweet.\n" + "x" * 60 + "\nAnother short one.\n")
        started = time.monotonic()
        done = cli(str(source), "--server", base)
        assert time.monotonic() - started < 60
    finally:
        stop_server(process)
    assert done.returncode == 0, done.stderr
    assert "line 2: skipped: has 60 characters; the limit is 50" in done.stderr
    assert [r["text"] for r in csv.DictReader(io.StringIO(done.stdout))] == ["Short and sweet.", "Another short one."]


@pytest.mark.parametrize("engine", ["server", "in process"])
def test_sentences_gives_one_row_per_sentence_with_offsets(tiny_model_dir: Path, tmp_path: Path, engine: str) -> None:
    source = tmp_path / "reviews.jsonl"
    documents = ["The staff were friendly. The room was dirty!", "   ", "Great 👍🏽 Would come back"]
    source.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    if engine == "server":
        base, process = launch(tiny_model_dir)
        try:
            done = cli(str(source), "--sentences", "--server", base)
        finally:
            stop_server(process)
    else:
        done = cli(str(source), "--sentences", "--model-dir", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert "line 2: skipped: the text is empty" in done.stderr and "2 rows scored, 1 skipped" in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["document"], r["sentence"], r["text"]) for r in rows] == [
        (1, 0, "The staff were friendly."),
        (1, 1, "The room was dirty!"),
        (3, 0, "Great 👍🏽"),
        (3, 1, "Would come back"),
    ]
    for row in rows:
        document = documents[row["document"] - 1]
        assert document[row["offset"] : row["offset"] + row["length"]] == row["text"]
        assert row["label"] == max(("negative", "neutral", "positive"), key=lambda label: row[f"p_{label}"])
        assert row["document_label"] in ("negative", "neutral", "positive", "mixed")


def test_a_document_with_its_own_error_is_written_and_counted_as_such(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A chunk the server refuses as a whole (more sentences than it takes) is split again, and a document it
    cannot score comes back as one row with its error, counted as such; nothing is dropped unreported."""
    base, process = launch(tiny_model_dir, SENTIMENT_MAX_SENTENCES="3", SENTIMENT_MAX_DOCUMENT_CHARS="80")
    try:
        source = tmp_path / "reviews.csv"
        source.write_text('id,text\n1,"One. Two."\n2,"Three. Four."\n3,' + "x" * 100 + '\n4,"   "\n')
        out = tmp_path / "sentences.csv"
        done = cli(str(source), "--sentences", "--server", base, "-o", str(out))
    finally:
        stop_server(process)
    assert done.returncode == 0, done.stderr
    assert "2 rows scored, 1 with their error, 1 skipped (lines 5)" in done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [(r["document"], r["text"]) for r in rows] == [
        ("2", "One."),
        ("2", "Two."),
        ("3", "Three."),
        ("3", "Four."),
        ("4", ""),
    ]
    assert rows[-1]["error"].startswith("document_too_long: ") and all(not r["error"] for r in rows[:-1])
    assert all(r["p_negative"] for r in rows[:-1]) and not rows[-1]["p_negative"]


def test_bad_csvs_are_named_by_line_and_leave_no_half_written_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    bulk = ("--model-dir", str(tiny_model_dir))
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbftext,id\nGreat.,1\n")
    done = cli(str(with_bom), *bulk)
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in csv.DictReader(io.StringIO(done.stdout))] == ["1"]

    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,id\nFine.,1\nCaf\xe9 was closed.,2\nGood.,3\n")
    out = tmp_path / "latin-scored.csv"
    done = cli(str(latin), *bulk, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "line 3: skipped: not UTF-8: byte 0xe9 at line 3, column 4" in done.stderr
    assert "2 rows scored, 1 skipped (lines 3)" in done.stderr
    assert [r["id"] for r in csv.DictReader(io.StringIO(out.read_text()))] == ["1", "3"]
    failed = cli(str(latin), *bulk, "-o", str(tmp_path / "failed.csv"), "--on-error", "fail")
    assert failed.returncode == 1 and "line 3: not UTF-8: byte 0xe9 at line 3, column 4" in failed.stderr
    assert not (tmp_path / "failed.csv").exists() and not list(tmp_path.glob(".failed.csv.*"))

    huge = tmp_path / "huge.csv"
    huge.write_text("text,id\nFine.,1\n" + '"' + "x" * 200_000 + '",2\nGood.,3\n')
    done = cli(str(huge), *bulk, "-o", str(tmp_path / "huge-scored.csv"))
    assert done.returncode == 1 and "line 3: a field is longer than the CSV reader's limit" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "huge-scored.csv").exists()

    done = cli(str(with_bom), *bulk, "--text-field", "review", "-o", str(tmp_path / "none.csv"))
    assert done.returncode == 1 and "no column 'review' (columns: text, id)" in done.stderr
    assert not (tmp_path / "none.csv").exists()
