"""Bulk scoring on Ray Data, in Ray's local mode, on a few thousand reviews spread over files of three
formats: every row once, traceable to its file and line, the same scores as the local engine."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_runtime import Predictor
from tests.support import ROOT
from training.data import Dataset

pytestmark = pytest.mark.slow


def write_inputs(folder: Path, texts: list[str]) -> dict[tuple[str, int], str]:
    """Seven files (CSV, JSONL, Parquet), two bad rows in each JSONL file; returns (file, line) -> text of
    every good row."""
    folder.mkdir()
    expected: dict[tuple[str, int], str] = {}
    chunks = np.array_split(np.arange(len(texts)), 7)
    for n, rows in enumerate(chunks):
        kind = ("csv", "jsonl", "parquet")[n % 3]
        path = folder / f"part{n}.{kind}"
        part = [texts[i] for i in rows]
        if kind == "csv":
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["review_id", "text"])
                for i, text in zip(rows, part, strict=True):
                    writer.writerow([f"r{i}", text])
            # the line a row ends on (reviews may hold newlines inside quoted fields)
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                for record in reader:
                    expected[(str(path), reader.line_num)] = record["text"]
        elif kind == "jsonl":
            lines = [
                json.dumps({"review_id": int(i), "text": t, "tags": ["a"]}) for i, t in zip(rows, part, strict=True)
            ]
            lines.insert(3, "{not json")
            lines.insert(5, json.dumps({"review_id": -1, "text": "   "}))
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            for line, raw in enumerate(lines, start=1):
                parsed: dict[str, str] | None = json.loads(raw) if raw.startswith('{"') else None
                if parsed and parsed["text"].strip():
                    expected[(str(path), line)] = parsed["text"]
        else:
            pd.DataFrame({"review_id": rows, "text": part}).to_parquet(path)
            expected.update({(str(path), k): t for k, t in enumerate(part, start=1)})
    return expected


def score(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentiment_bulk", *args, "--engine", "ray", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ray_engine_scores_every_row_once_like_the_local_engine(
    tmp_path: Path, imdb: Dataset, tiny_model_dir: Path
) -> None:
    texts = [ex.text for ex in imdb.examples[:2400]]
    expected = write_inputs(tmp_path / "in", texts)
    out = tmp_path / "out"
    done = score([str(tmp_path / "in"), "-o", str(out), "--model-dir", str(tiny_model_dir)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(expected)} rows scored, 4 skipped" in done.stderr  # two bad rows in each JSONL file
    skipped = [line.split(" -- ")[-1] for line in done.stderr.splitlines() if "skipped:" in line]
    assert sorted(s.split("/")[-1] for s in skipped) == [
        "part1.jsonl: line 4: skipped: not valid JSON (Expecting property name enclosed in double quotes)",
        "part1.jsonl: line 6: skipped: the text is empty",
        "part4.jsonl: line 4: skipped: not valid JSON (Expecting property name enclosed in double quotes)",
        "part4.jsonl: line 6: skipped: the text is empty",
    ]

    # one part file per block; files of different formats have different columns, so read each
    result = pd.concat([pd.read_parquet(part) for part in sorted(out.glob("*.parquet"))], ignore_index=True)
    keys = list(zip(result["source_file"], result["source_row"], strict=True))
    assert len(keys) == len(set(keys)) == len(expected)  # every row once
    assert set(keys) == set(expected)
    assert all(expected[k] == t for k, t in zip(keys, result["text"], strict=True))  # traceable to its input
    assert {"review_id", "tags", "label", "score", "p_negative", "p_positive"} <= set(result.columns)

    local = Predictor.load(tiny_model_dir, provider="cpu").predict(list(result["text"]), max_batch_tokens=4096)
    assert list(result["label"]) == [p.label for p in local]
    np.testing.assert_allclose(result["score"], [p.score for p in local], atol=1e-6)
    np.testing.assert_allclose(result["p_positive"], [p.probabilities["positive"] for p in local], atol=1e-6)


def test_ray_engine_on_error_fail_stops_and_names_the_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "fine"}\n{"text": ""}\n', encoding="utf-8")
    done = score([str(folder), "-o", str(tmp_path / "out"), "--model-dir", str(tiny_model_dir), "--on-error", "fail"])
    assert done.returncode == 1
    assert "a.jsonl: line 2: the text is empty" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_job_on_ray_gives_the_same_results_as_the_local_engine(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SENTIMENT_JOBS_ENGINE=ray: a job's rows scored on Ray Data (local mode) hold what the service's own
    engine gives for the same file: every row once, in order, the same labels and probabilities."""
    from sentiment_client import SentimentClient
    from tests.support import launch, stop_server

    source = tmp_path / "reviews.jsonl"
    texts = ["A wonderful film.", "   ", "Dull, slow and far too long. I left early.", "It was fine.", "Loved it!"] * 60
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    results = {}
    for engine in ("local", "ray"):
        base, process = launch(tiny_model_dir, tmp_path / f"{engine}.log", SENTIMENT_JOBS_ENGINE=engine)
        try:
            with SentimentClient(base) as client:
                for task in ("predict", "analyze"):
                    job = client.submit_job(source, id_column="id", task=task)
                    job.wait(progress=False, timeout_s=600)
                    results[engine, task] = list(job.results())
        finally:
            stop_server(process)
    for task in ("predict", "analyze"):
        local, on_ray = results["local", task], results["ray", task]
        assert [r["row"] for r in on_ray] == [r["row"] for r in local] == list(range(len(texts)))
        assert [r.get("error") for r in on_ray] == [r.get("error") for r in local]
        assert [r.get("label") for r in on_ray] == [r.get("label") for r in local]
        for a, b in zip(local, on_ray, strict=True):
            if "error" not in a:
                assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
                assert a["language"] == b["language"]
