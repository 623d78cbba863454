"""In-process ceiling: tokenize + ONNX Runtime inference of the test reviews, no HTTP.

    python -m bench.ceiling [--model-dir models/imdb-bilstm] [--texts 1000] [--repeats 3]

Prints (and returns) reviews/s per batch size and thread count, and the single-short-text latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from service.predictor import Predictor
from training.evaluate import test_split_of

SHORT_TEXT = "A wonderful film, I loved it."


def test_reviews(model_dir: Path, count: int) -> list[str]:
    predictor = Predictor.load(model_dir, provider="cpu", intra_op_threads=1)
    examples = test_split_of(predictor.card)
    step = max(1, len(examples) // count)
    return [ex.text for ex in examples[::step][:count]]


def throughput(predictor: Predictor, texts: list[str], batch_size: int, repeats: int) -> float:
    """Median reviews/s over ``repeats`` passes; texts are taken in order (no length sorting across batches)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predictor.predict(texts[i:i + batch_size])
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def single_latency_ms(predictor: Predictor, runs: int = 300) -> float:
    for _ in range(20):
        predictor.predict([SHORT_TEXT])
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        predictor.predict([SHORT_TEXT])
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(model_dir: Path, count: int, repeats: int, batch_sizes: list[int], threads: list[int],
            provider: str = "cpu") -> dict[str, Any]:
    texts = test_reviews(model_dir, count)
    results: dict[str, Any] = {"texts": len(texts), "provider": provider, "runs": []}
    for n_threads in threads:
        predictor = Predictor.load(model_dir, provider=provider, intra_op_threads=n_threads)  # type: ignore[arg-type]
        predictor.warm_up()
        latency = single_latency_ms(predictor)
        for batch_size in batch_sizes:
            rate = throughput(predictor, texts, batch_size, repeats)
            results["runs"].append({"threads": n_threads, "batch_size": batch_size, "reviews_per_s": rate})
            print(f"threads {n_threads}  batch {batch_size:4d}  {rate:8.1f} reviews/s", flush=True)
        results.setdefault("single_short_text_ms", {})[str(n_threads)] = latency
        print(f"threads {n_threads}  single short text p50 {latency:.2f} ms", flush=True)
    best = max(results["runs"], key=lambda r: r["reviews_per_s"])
    results["best"] = best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/imdb-bilstm"))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,4,16,32,64,128")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    results = measure(args.model_dir, args.texts, args.repeats, [int(b) for b in args.batch_sizes.split(",")],
                      [int(t) for t in args.threads.split(",")], args.provider)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
