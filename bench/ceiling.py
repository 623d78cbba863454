"""In-process ceiling: tokenize + ONNX Runtime inference of the test reviews, no HTTP.

    python -m bench.ceiling [--model-dir models/sentiment-bilstm] [--texts 1000] [--repeats 3]

Prints (and returns) reviews/s per batch size and thread count, and the single-short-text latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from model_runtime import Predictor
from training.data import split_dataset
from training.sources import load_sources

SHORT_TEXT = "A wonderful film, I loved it."


def test_reviews(count: int) -> list[str]:
    """``count`` IMDB reviews spread evenly over IMDB's test split (repeated in turn if it has fewer): the
    same texts for every model, so their throughputs compare. The split is content-keyed, the same for
    every shipped model since 2.x (a model's own split record need not rebuild: 3.0.0's does not since the
    tweets gained their neutral third)."""
    examples = split_dataset(load_sources(("imdb",))).test
    step = max(1, len(examples) // count)
    texts = [ex.text for ex in examples[::step]]
    return [texts[i % len(texts)] for i in range(count)]


def throughput(
    predictor: Predictor,
    texts: list[str],
    batch_size: int,
    repeats: int,
    max_batch_tokens: int | None,
    workers: int = 1,
) -> float:
    """Median reviews/s over ``repeats`` passes. Texts arrive in test-split order, ``batch_size`` at a time
    (as requests would); inside a batch the predictor groups them by length, as the service does.
    ``workers`` threads share the texts and call the same session concurrently."""

    def score(share: list[str]) -> None:
        for i in range(0, len(share), batch_size):
            predictor.predict(share[i : i + batch_size], max_batch_tokens=max_batch_tokens)

    rates = []
    for _ in range(repeats):
        threads = [threading.Thread(target=score, args=(texts[k::workers],)) for k in range(workers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
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


def measure(
    model_dir: Path,
    count: int,
    repeats: int,
    batch_sizes: list[int],
    setups: list[tuple[int, int]],
    provider: str = "cpu",
    max_batch_tokens: int | None = 4096,
) -> dict[str, Any]:
    """``setups``: (workers, onnxruntime threads per run) pairs to try."""
    texts = test_reviews(count)
    results: dict[str, Any] = {
        "texts": len(texts),
        "provider": provider,
        "max_batch_tokens": max_batch_tokens,
        "runs": [],
    }
    for workers, n_threads in setups:
        predictor = Predictor.load(model_dir, provider=provider, intra_op_threads=n_threads)  # type: ignore[arg-type]  # argparse choices
        predictor.warm_up()
        setup = f"{workers}x{n_threads}"
        if workers == 1:
            latency = single_latency_ms(predictor)
            results.setdefault("single_short_text_ms", {})[str(n_threads)] = latency
            print(f"threads {n_threads}  single short text p50 {latency:.2f} ms", flush=True)
        for batch_size in batch_sizes:
            rate = throughput(predictor, texts, batch_size, repeats, max_batch_tokens, workers)
            results["runs"].append(
                {
                    "setup": setup,
                    "workers": workers,
                    "threads": n_threads,
                    "batch_size": batch_size,
                    "reviews_per_s": rate,
                }
            )
            print(
                f"{workers} worker(s) x {n_threads} thread(s)  batch {batch_size:4d}  {rate:8.1f} reviews/s", flush=True
            )
    best = max(results["runs"], key=lambda r: r["reviews_per_s"])
    results["best"] = best
    return results


def compare(args: argparse.Namespace) -> None:
    """Two models in the same run, alternating, so the machine's drift hits both alike."""
    texts = test_reviews(args.texts)
    models = {
        name: Predictor.load(path, provider=args.provider, intra_op_threads=1)
        for name, path in (("A", args.model_dir), ("B", args.compare))
    }
    for predictor in models.values():
        predictor.warm_up()
    rates: dict[str, list[float]] = {"A": [], "B": []}
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        for _ in range(args.repeats):
            for name, predictor in models.items():
                rates[name].append(throughput(predictor, texts, batch, 1, args.max_batch_tokens or None, 2))
        a, b = rates["A"][-args.repeats :], rates["B"][-args.repeats :]
        print(
            f"batch {batch:4d}: A {statistics.median(a):7.0f} reviews/s  B {statistics.median(b):7.0f} reviews/s  "
            f"A/B {statistics.median(a) / statistics.median(b):.3f}",
            flush=True,
        )
    ratio = statistics.median(x / y for x, y in zip(rates["A"], rates["B"], strict=True))
    print(f"A = {args.model_dir}, B = {args.compare}: median A/B over all rounds {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/sentiment-bilstm"))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8,32,64,128")
    parser.add_argument("--max-batch-tokens", type=int, default=4096, help="length-group cap (0: one group)")
    parser.add_argument("--setups", default="1x1,1x2,2x1", help="WORKERSxTHREADS, comma-separated")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="another model directory: both are measured in turn (rounds of A then B) on the same IMDB test "
        "reviews at each setup and batch size, and the ratio A / B is printed",
    )
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    results = measure(
        args.model_dir,
        args.texts,
        args.repeats,
        [int(b) for b in args.batch_sizes.split(",")],
        [(int(s.split("x")[0]), int(s.split("x")[1])) for s in args.setups.split(",")],
        args.provider,
        args.max_batch_tokens or None,
    )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
