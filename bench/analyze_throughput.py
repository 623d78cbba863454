"""/analyze against /predict on the same sentences, side by side in one run (docs/documents.md): each body is
the first 8 sentences of an IMDB test review, sent as one document to /analyze or as 8 texts to /predict;
wrk at 64 connections, the two alternating (A, B, A, B) against one server. Sentences per second count
sentences in 200 answers.

    python -m bench.analyze_throughput [--model-dir DIR] [--duration 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import free_port, start, stop, wrk
from model_runtime import split_sentences
from model_runtime.contract import SHIPPED_MODEL_DIR
from training.data import split_dataset
from training.sources import load_sources

SENTENCES = 8


def bodies(folder: Path) -> dict[str, Path]:
    """Per route, one JSON body per line: the same first SENTENCES sentences of each review."""
    documents, texts = [], []
    for example in split_dataset(load_sources(("imdb",))).test:
        spans = split_sentences(example.text)
        if len(spans) >= SENTENCES:
            end = spans[SENTENCES - 1][0] + spans[SENTENCES - 1][1]
            documents.append({"documents": [example.text[:end]]})
            texts.append({"texts": [example.text[a : a + n] for a, n in spans[:SENTENCES]]})
    files = {"/analyze": folder / "analyze.jsonl", "/predict": folder / "predict.jsonl"}
    files["/analyze"].write_text("".join(json.dumps(b) + "\n" for b in documents))
    files["/predict"].write_text("".join(json.dumps(b) + "\n" for b in texts))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("bench/results/analyze-throughput.json"))
    args = parser.parse_args()
    port = free_port()
    env = {"SENTIMENT_MODEL_DIR": str(args.model_dir), "SENTIMENT_PORT": str(port), "SENTIMENT_PROVIDER": "cpu"}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        files = bodies(Path(folder))
        server = start([sys.executable, "-m", "service"], env, port)
        try:
            wrk(port, files["/predict"], args.connections, 3)  # warm, unmeasured
            for path in ("/predict", "/analyze", "/predict", "/analyze"):
                result = wrk(port, files[path], args.connections, args.duration, path)
                ok = result["statuses"].get("200", 0)
                runs.append({"path": path, "sentences_per_s": ok * SENTENCES / (result["duration_us"] / 1e6), **result})
                print(path, round(runs[-1]["sentences_per_s"]), result["statuses"])
        finally:
            stop(server)
    mean = {p: sum(r["sentences_per_s"] for r in runs if r["path"] == p) / 2 for p in ("/predict", "/analyze")}
    summary = {"sentences_per_request": SENTENCES, "connections": args.connections, "mean": mean}
    summary["ratio"] = mean["/analyze"] / mean["/predict"]
    print(json.dumps(summary))
    args.output.write_text(json.dumps({**summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
