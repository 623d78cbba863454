"""/predict's throughput and tail latency alone and beside maximal /analyze requests, this tree against
another commit's in one run (docs/performance.md).

16 wrk connections send /predict bodies (one IMDB test review each) for ``--duration`` seconds, first alone,
then while 3 clients post, one after another, the largest /analyze requests the defaults take: 32
documents of 99,000 characters in 31 sentences each (992 sentences, each cut to its last 800 tokens).
Every /analyze answer's status is counted (200 or 429 expected; a 429 is retried after its Retry-After).
Each tree gets a fresh server.

    python -m bench.analyze_beside_predict [--before 7c072a1] [--duration 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.run import free_port, start, stop, wrk
from model_runtime.contract import SHIPPED_MODEL_DIR
from training.data import split_dataset
from training.sources import load_sources

CLIENTS, ANALYZE_CLIENTS, DOCUMENTS, DOCUMENT_CHARS, SENTENCES = 16, 3, 32, 99_000, 31


def bodies(folder: Path) -> tuple[Path, dict[str, Any]]:
    reviews = [ex.text for ex in split_dataset(load_sources(("imdb",))).test]
    predict = folder / "predict.jsonl"
    predict.write_text("".join(json.dumps({"text": r}) + "\n" for r in reviews))
    # The largest request the defaults take: 32 documents of 99,000 characters in 31 sentences each (992 in
    # all, under SENTIMENT_MAX_SENTENCES), review text whose own sentence ends are commas.
    text = " ".join(r.replace("<br />", " ").replace(".", ",").replace("!", ",").replace("?", ",") for r in reviews)
    length, documents, position = DOCUMENT_CHARS // SENTENCES, [], 0
    for _ in range(DOCUMENTS):
        sentences = []
        for _ in range(SENTENCES):
            sentences.append(text[position : position + length - 2].strip() + ".")
            position += length
        documents.append(" ".join(sentences))
    return predict, {"documents": documents}


def analyze_clients(port: int, body: dict[str, Any], stop_at: float) -> Counter[str]:
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < stop_at:
                response = http.post(f"http://127.0.0.1:{port}/analyze", json=body)
                with lock:
                    statuses[str(response.status_code)] += 1
                if response.status_code == 429:
                    time.sleep(float(response.headers.get("retry-after", "1")))

    threads = [threading.Thread(target=client) for _ in range(ANALYZE_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def measure(tree: Path, model_dir: Path, predict: Path, document: dict[str, Any], duration: float) -> dict[str, Any]:
    port = free_port()
    env = {
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROVIDER": "cpu",
        "SENTIMENT_LOG_LEVEL": "warning",
        "SENTIMENT_JOBS": "false",
        "PYTHONPATH": str(tree),
    }
    server = start([sys.executable, "-m", "service"], env, port, cwd=tree)
    try:
        wrk(port, predict, CLIENTS, 3)  # warm, unmeasured
        alone = wrk(port, predict, CLIENTS, duration)
        statuses: Counter[str] = Counter()
        flood = threading.Thread(
            target=lambda: statuses.update(analyze_clients(port, document, time.monotonic() + duration + 2))
        )
        flood.start()
        time.sleep(2)  # the /analyze requests are in
        beside = wrk(port, predict, CLIENTS, duration)
        flood.join()
    finally:
        stop(server)
    runs = {"alone": alone, "beside": beside}
    throughput = {name: r["statuses"].get("200", 0) / (r["duration_us"] / 1e6) for name, r in runs.items()}
    return {
        "predict_per_s": throughput,
        "ratio": throughput["beside"] / throughput["alone"],
        "p99_ms": {name: r["p99_us"] / 1000 for name, r in runs.items()},
        "predict_statuses_beside": beside["statuses"],
        "analyze_statuses": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--before", default=None, help="another commit, measured in the same run")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/analyze-beside-predict.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        predict, document = bodies(Path(folder))
        trees = {"after": Path.cwd()}
        if args.before:
            trees["before"] = Path(folder) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(trees["before"]), args.before], check=True)
        try:
            for name, tree in trees.items():
                results[name] = measure(tree, args.model_dir.resolve(), predict, document, args.duration)
                print(name, json.dumps(results[name]), flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["before"])], check=False)
    results["setup"] = {
        "predict_clients": CLIENTS,
        "analyze_clients": ANALYZE_CLIENTS,
        "documents": DOCUMENTS,
        "document_chars": DOCUMENT_CHARS,
        "duration_s": args.duration,
        "before": args.before,
    }
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
