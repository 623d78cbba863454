"""Bulk scoring on Ray Data: ``python -m sentiment_bulk INPUT -o OUTPUT_DIR --engine ray [--ray-address ADDR]``.

INPUT is a file or a directory of CSV, JSON Lines and Parquet files. Each file becomes rows (every input
column, plus ``source_file`` and ``source_row``, its line in a text file or its 1-based row in Parquet);
``map_batches`` runs them through a pool of actors, each loading the model directory once; the result is
a directory of Parquet files with every input column (as text: files of different formats may share a
column) plus ``label``, ``score`` and one ``p_<label>`` column per label. Bad rows (no text, an empty
text, a broken JSON line) follow ``--on-error`` as in the local engine and are reported with file and
line. On a cluster the model directory and the input must be
readable at the same path on every node (a shared file system, or object storage mounted there).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_runtime.batch import BatchScorer

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ERROR = "_error"


def input_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"error: no .csv, .jsonl or .parquet files in {path}")
    for f in files:
        if f.suffix.lower() not in FORMATS:
            raise SystemExit(f"error: {f}: not a .csv, .jsonl or .parquet file")
    return files


def _cell(value: Any) -> str | None:
    """Input values travel as text: CSV has no types, and files of different formats may share a column
    (an ``id`` that is text in one file and a number in another), which one Arrow column cannot hold."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and np.isnan(value):
        return None
    return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value, ensure_ascii=False, default=str)


def read_file(item: dict[str, Any], text_field: str) -> Iterator[dict[str, Any]]:
    """The rows of one input file, each with where it came from and, for a bad row, why it is bad."""
    path = Path(item["path"])
    kind = FORMATS[path.suffix.lower()]
    if kind == "parquet":
        frame = pd.read_parquet(path)
        for index, record in enumerate(frame.to_dict("records"), start=1):
            yield _row(path, index, {str(k): _cell(v) for k, v in record.items()}, text_field)
    elif kind == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for record in reader:
                extra = record.pop(None, None)  # csv puts surplus cells under the key None
                row = _row(path, reader.line_num, {str(k): v for k, v in record.items()}, text_field)
                if extra:
                    row[ERROR] = f"{len(extra)} more cells than the header has columns"
                yield row
    else:
        with path.open(encoding="utf-8") as f:
            for line, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError as exc:
                    yield {"source_file": str(path), "source_row": line, ERROR: f"not valid JSON ({exc.msg})"}
                    continue
                if not isinstance(record, dict):
                    yield {"source_file": str(path), "source_row": line, ERROR: "not a JSON object"}
                    continue
                yield _row(path, line, {str(k): _cell(v) for k, v in record.items()}, text_field)


def _row(path: Path, line: int, record: dict[str, Any], text_field: str) -> dict[str, Any]:
    text = record.get(text_field)
    problem = None
    if not isinstance(text, str):
        problem = f"no text in {text_field!r}"
    elif not text.strip():
        problem = "the text is empty"
    return {**record, "source_file": str(path), "source_row": line, ERROR: problem}


class Scorer(BatchScorer):
    """One actor: loads the model directory once (model_runtime.batch.BatchScorer, the actor the service's
    jobs use on Ray too), then scores batches of rows, given and returned as data frames with every input
    column, ``label``, ``score`` and one ``p_<label>`` column per label."""

    def __init__(self, model_dir: str, provider: str, text_field: str) -> None:
        super().__init__(model_dir, provider, text_column=text_field)
        self.text_field = text_field

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:  # type: ignore[override]  # data frames, not columns
        good = batch[batch[ERROR].isna()] if ERROR in batch else batch
        predictions = self.predictor.predict(good[self.text_field].tolist(), max_batch_tokens=4096)
        out = good.drop(columns=[ERROR], errors="ignore").copy()
        out["label"] = [p.label for p in predictions]
        out["score"] = np.array([p.score for p in predictions], dtype=np.float32)
        for label in self.predictor.labels:
            out[f"p_{label}"] = np.array([p.probabilities[label] for p in predictions], dtype=np.float32)
        return out


def run(
    input_path: Path,
    output: Path,
    model_dir: Path,
    provider: str,
    text_field: str,
    on_error: str,
    address: str | None,
    batch_size: int,
) -> int:
    import ray

    files = input_files(input_path)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        rows = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files)).flat_map(
            lambda item: list(read_file(item, text_field))
        )
        rows = rows.materialize()
        bad = rows.filter(lambda r: r.get(ERROR) is not None).take_all()
        for row in sorted(bad, key=lambda r: (r["source_file"], r["source_row"])):
            print(
                f"{row['source_file']}: line {row['source_row']}: "
                f"{'skipped: ' if on_error == 'skip' else ''}{row[ERROR]}",
                file=sys.stderr,
            )
        if bad and on_error == "fail":
            return 1
        cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]  # ray leaves it untyped
        actors = max(1, int(cpus))
        scored = rows.map_batches(
            Scorer,
            fn_constructor_kwargs={"model_dir": str(model_dir), "provider": provider, "text_field": text_field},
            batch_size=batch_size,
            batch_format="pandas",
            concurrency=actors,
            num_cpus=1,
        )
        scored.write_parquet(str(output))
        print(f"{rows.count() - len(bad)} rows scored, {len(bad)} skipped, by {actors} actors", file=sys.stderr)
        return 0
    finally:
        ray.shutdown()
