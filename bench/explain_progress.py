"""Explanations beside scoring load (docs/operations.md): ``clients`` threads post /predict back to back
while ``explainers`` threads post maximum-size explanations (8 texts of 1,000 words) for ``seconds``; prints
each explanation's status, time and Retry-After.

    python -m bench.explain_progress --base http://127.0.0.1:8000 [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter

import httpx

REVIEW_WORDS = "the film was long but the acting was wonderful and the ending was awful"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--explainers", type=int, default=3)
    args = parser.parse_args()
    stop = time.monotonic() + args.seconds
    predicted: Counter[int] = Counter()
    explained: list[dict[str, float]] = []
    words = REVIEW_WORDS.split(" ")
    text = " ".join(words[i % len(words)] for i in range(1000))  # 1,000 words

    def predict() -> None:
        with httpx.Client(base_url=args.base, timeout=60) as http:
            while time.monotonic() < stop:
                predicted[
                    http.post("/predict", json={"texts": ["A fine film.", "Dull and long."] * 4}).status_code
                ] += 1

    def explain() -> None:
        with httpx.Client(base_url=args.base, timeout=600) as http:
            while time.monotonic() < stop:
                started = time.monotonic()
                answer = http.post("/explain", json={"texts": [text] * 8})
                row: dict[str, float] = {"status": answer.status_code, "seconds": round(time.monotonic() - started, 1)}
                if "retry-after" in answer.headers:
                    row["retry_after"] = int(answer.headers["retry-after"])
                    time.sleep(int(answer.headers["retry-after"]))
                explained.append(row)

    threads = [threading.Thread(target=predict) for _ in range(args.clients)]
    threads += [threading.Thread(target=explain) for _ in range(args.explainers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"predict": dict(predicted), "explain": explained}))


if __name__ == "__main__":
    main()
