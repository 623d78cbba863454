"""Where one server-side batch spends its time: tokenize, token-id lists, padding, the model run, results.

    python -m bench.profile_batch --provider cuda --batch-size 1024

Also times the model alone at several (batch, steps) shapes and, with ``--ort-profile``, lists the graph's
slowest nodes from onnxruntime's own profiler. Prints a table; medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.ceiling import test_reviews
from model_runtime import Predictor, pad_ids, session_options


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models/sentiment-bilstm"))
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ort-profile", action="store_true")
    args = parser.parse_args()

    predictor = Predictor.load(args.model_dir, provider=args.provider, intra_op_threads=1)
    predictor.warm_up()
    texts = test_reviews(args.batch_size)
    encodings = predictor.encode(texts)
    ids = [e.ids for e in encodings]
    batch, lengths = pad_ids(ids)
    probs = predictor.probabilities(ids)
    phases = {
        "tokenize (encode_batch)": lambda: predictor.encode(texts),
        "token-id lists": lambda: [e.ids for e in encodings],
        "pad to (B, T)": lambda: pad_ids(ids),
        "model run": lambda: predictor.session.run(None, {"input_ids": batch, "lengths": lengths}),
        "predictions": lambda: [predictor.prediction(p, e) for p, e in zip(probs.tolist(), encodings, strict=True)],
        "whole predict()": lambda: predictor.predict(texts),
    }
    print(f"batch of {len(texts)} test reviews, {batch.shape[1]} steps, provider {predictor.provider}")
    for name, fn in phases.items():
        ms = median_ms(fn, args.repeats)
        print(f"  {name:26s} {ms:9.2f} ms  ({len(texts) / ms * 1000:10.0f} reviews/s)")

    print("model run alone, (batch, steps) -> ms:")
    for b in (64, 256, 1024):
        row = []
        for t in (100, 200, 400, 800):
            x = np.full((b, t), 5, dtype=np.int64)
            n = np.full((b,), t, dtype=np.int64)
            feed = {"input_ids": x, "lengths": n}
            predictor.session.run(None, feed)
            row.append(f"T={t}: {median_ms(lambda: predictor.session.run(None, feed), args.repeats):7.2f}")  # noqa: B023
        print(f"  B={b:5d}  " + "  ".join(row))

    if args.ort_profile:
        import onnxruntime as ort

        options = session_options(1)
        options.enable_profiling = True
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.provider == "cuda" else None
        session = ort.InferenceSession(str(args.model_dir / "model.onnx"), options, providers=providers)
        for _ in range(3):
            session.run(None, {"input_ids": batch, "lengths": lengths})
        trace = json.loads(Path(session.end_profiling()).read_text())
        per_node: dict[str, list[float]] = defaultdict(list)
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                per_node[f"{event['args'].get('op_name')} on {event['args'].get('provider')}"].append(event["dur"])
        print("slowest nodes (median µs per run):")
        for name, durs in sorted(per_node.items(), key=lambda kv: -statistics.median(kv[1]))[:10]:
            print(f"  {name:40s} {statistics.median(durs):10.0f}")


if __name__ == "__main__":
    main()
